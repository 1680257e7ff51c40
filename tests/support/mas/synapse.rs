//! A second, real Synapse (the platform's venv and rate-limit settings) that
//! delegates authentication to the fake MAS, as ESS configures it:
//! `matrix_authentication_service: {enabled: true, endpoint, secret}` and no
//! password login. It introspects every token at the fake and obeys the fake's
//! `/_synapse/mas/*` calls. One per test, started from a template data
//! directory (made once: a fresh database needs a minute of background
//! updates); stopped when dropped, its directory kept only when the test failed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::{platform, repo_root, unique};

pub struct DelegatedSynapse {
    pub url: String,
    pub dir: PathBuf,
    child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

const TEMPLATE_FILES: [&str; 4] = ["homeserver.yaml", "exo.test.log.config", "exo.test.signing.key", "homeserver.db"];

/// The template directory: generated config and a database whose background updates are done.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let p = platform();
        let version = p.var("SYNAPSE_VERSION");
        let dir = repo_root().join("target/platform").join(format!("mas-synapse-template-{version}"));
        if dir.join("ready").exists() {
            return dir;
        }
        // Built aside and renamed into place, so concurrent test binaries never see half a template.
        let tmp = repo_root().join("target/platform").join(unique("mas-synapse-template-tmp"));
        std::fs::create_dir_all(&tmp).expect("template dir");
        let status = Command::new(p.var("SYNAPSE_PYTHON"))
            .args(["-m", "synapse.app.homeserver", "--generate-config", "-H", p.server_name(), "--report-stats", "no"])
            .arg("-c")
            .arg(tmp.join("homeserver.yaml"))
            .arg("--config-directory")
            .arg(&tmp)
            .arg("--data-directory")
            .arg(&tmp)
            .current_dir(&tmp)
            .stdout(Stdio::null())
            .status()
            .expect("synapse generates its config");
        assert!(status.success(), "synapse --generate-config failed");
        let port = free_port();
        write_overrides(&tmp, port, "http://127.0.0.1:9", "template-secret", 25);
        let mut child = launch(&tmp);
        let db = tmp.join("homeserver.db");
        // Serving /health means the schema is in place; then the background updates must drain.
        let query = "import sqlite3,sys,urllib.request; urllib.request.urlopen(sys.argv[2], timeout=1).read(); \
            print(sqlite3.connect(sys.argv[1]).execute('select count(*) from background_updates').fetchone()[0])";
        let health = format!("http://127.0.0.1:{port}/health");
        let mut done = false;
        for _ in 0..1200 {
            let out = Command::new(p.var("SYNAPSE_PYTHON")).args(["-c", query]).arg(&db).arg(&health).output();
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0") {
                done = true;
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the template Synapse exited ({status}): see {}", tmp.join("synapse.log").display());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        stop(&mut child);
        assert!(done, "the template Synapse's background updates did not finish within 5 minutes");
        // Paths in the config name the final directory, which instances replace with their own.
        let config = std::fs::read_to_string(tmp.join("homeserver.yaml")).expect("config");
        let config = config.replace(tmp.to_str().expect("utf-8 path"), dir.to_str().expect("utf-8 path"));
        std::fs::write(tmp.join("homeserver.yaml"), config).expect("config written");
        std::fs::write(tmp.join("ready"), "").expect("marker");
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp); // another binary won the race
        }
        dir
    })
}

/// Listener, MAS delegation and mail settings of one instance.
fn write_overrides(dir: &Path, port: u16, mas_url: &str, secret: &str, smtp_port: u16) {
    let server = platform().server_name();
    let overrides = format!(
        r#"listeners:
  - {{port: {port}, bind_addresses: ['127.0.0.1'], type: http, tls: false, x_forwarded: false,
     resources: [{{names: [client], compress: false}}]}}
public_baseurl: http://127.0.0.1:{port}/
enable_3pid_changes: false
password_config: {{enabled: false}}
matrix_authentication_service: {{enabled: true, endpoint: "{mas_url}/", secret: "{secret}"}}
email:
  smtp_host: 127.0.0.1
  smtp_port: {smtp_port}
  force_tls: false
  require_transport_security: false
  enable_tls: false
  notif_from: "Matrix <noreply@{server}>"
  enable_notifs: true
  notif_for_new_users: true
  notif_delay_before_mail: 2s
  app_name: exo-matrix-test
"#
    );
    std::fs::write(dir.join("mas.yaml"), overrides).expect("mas.yaml");
    // The generated log config writes to the current directory; keep the log in `dir`.
    let log_config = dir.join(format!("{server}.log.config"));
    let text = std::fs::read_to_string(&log_config).expect("log config");
    let text: Vec<String> = text
        .lines()
        .map(|l| match l.find("filename:") {
            Some(i) => format!("{}filename: {}", &l[..i], dir.join("homeserver.log").display()),
            None => l.to_owned(),
        })
        .collect();
    std::fs::write(&log_config, text.join("\n")).expect("log config written");
}

impl DelegatedSynapse {
    /// Starts it with `mas_url` as its MAS and `secret` shared with it; mail goes to `smtp_port`.
    pub async fn start(mas_url: &str, secret: &str, smtp_port: u16) -> DelegatedSynapse {
        let template = template();
        let dir = repo_root().join("target/platform").join(unique("mas-synapse"));
        std::fs::create_dir_all(&dir).expect("synapse dir");
        for file in TEMPLATE_FILES {
            let text = std::fs::read(template.join(file)).expect("template file");
            let text = if file.ends_with(".yaml") {
                let t = String::from_utf8(text).expect("utf-8 config");
                t.replace(template.to_str().expect("utf-8 path"), dir.to_str().expect("utf-8 path")).into_bytes()
            } else {
                text
            };
            std::fs::write(dir.join(file), text).expect("copied");
        }
        let port = free_port();
        write_overrides(&dir, port, mas_url, secret, smtp_port);
        let child = launch(&dir);
        let mut me = DelegatedSynapse { url: format!("http://127.0.0.1:{port}"), dir, child };
        me.wait_healthy().await;
        me
    }

    /// Stops and starts it again on the same port and data (its token cache is gone after).
    pub async fn restart(&mut self) {
        stop(&mut self.child);
        self.child = launch(&self.dir);
        self.wait_healthy().await;
    }

    /// Synapse's own log (one access line per request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("homeserver.log")).unwrap_or_default()
    }

    async fn wait_healthy(&mut self) {
        let http = reqwest::Client::new();
        for _ in 0..240 {
            if let Ok(r) = http.get(format!("{}/health", self.url)).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("synapse.log")).unwrap_or_default();
                panic!("the delegating Synapse exited ({status}):\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("the delegating Synapse did not answer /health within 60 s");
    }
}

impl Drop for DelegatedSynapse {
    fn drop(&mut self) {
        stop(&mut self.child);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    for _ in 0..50 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn launch(dir: &Path) -> Child {
    let p = platform();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("synapse.log")).expect("log");
    Command::new(p.var("SYNAPSE_PYTHON"))
        .args(["-m", "synapse.app.homeserver"])
        .arg("-c")
        .arg(dir.join("homeserver.yaml"))
        .arg("-c")
        .arg(PathBuf::from(p.var("SYNAPSE_DATA")).join("platform.yaml"))
        .arg("-c")
        .arg(dir.join("mas.yaml"))
        .current_dir(dir)
        .stdout(log.try_clone().expect("fd"))
        .stderr(log)
        .spawn()
        .expect("synapse starts")
}
