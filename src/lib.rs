//! exo-matrix-operator: gives every eXo Platform / Meeds space a Matrix room
//! and keeps Synapse in sync with the spaces and users it is told about.

pub mod addon_api;
pub mod avatar;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod credentials;
pub mod duration;
pub mod error_chain;
pub mod exo;
pub mod http;
pub mod ids;
pub mod leader;
pub mod mas;
pub mod metrics;
pub mod plan;
pub mod retry;
pub mod run;
pub mod secret;
pub mod session;
pub mod synapse;
pub mod tls;

/// Field manager and event reporter name.
pub const MANAGER: &str = "exo-matrix-operator";
