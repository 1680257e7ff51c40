//! Command-line interface: parsing and the small subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::crd;

#[derive(Parser, Debug)]
#[command(name = "exo-matrix-operator", version, about = "Gives every eXo space its own Matrix room and keeps Synapse in sync")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write the CustomResourceDefinitions generated from the Rust types.
    Crdgen(CrdgenArgs),
}

#[derive(Args, Debug)]
pub struct CrdgenArgs {
    /// Directory to write `<plural>.<group>.yaml` files into; stdout when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot serialize the CRD {0}")]
    Serialize(String, #[source] serde_yaml::Error),
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
}

pub fn crdgen(args: &CrdgenArgs) -> Result<(), CliError> {
    let mut all = String::new();
    for crd in crd::all() {
        let name = crd::file_name(&crd);
        let yaml = crd::to_yaml(&crd).map_err(|e| CliError::Serialize(name.clone(), e))?;
        match &args.out {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| CliError::Write(dir.clone(), e))?;
                let path = dir.join(&name);
                std::fs::write(&path, yaml).map_err(|e| CliError::Write(path, e))?;
            }
            None => {
                all.push_str("---\n");
                all.push_str(&yaml);
            }
        }
    }
    if args.out.is_none() {
        print!("{all}");
    }
    Ok(())
}
