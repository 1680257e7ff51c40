//! A provisioned user with an email receives Synapse's notification emails.
//! Synapse's `email` settings (tests/platform.sh) point at an SMTP sink this
//! test starts on loopback; `notif_delay_before_mail` is 2 s there.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use exo_matrix_operator::crd::{MatrixUser, SpaceRoomLink};
use exo_matrix_operator::synapse::enc;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One received mail: its recipients and its raw text.
#[derive(Clone, Debug)]
struct Mail {
    to: Vec<String>,
    data: String,
}

/// A minimal SMTP server that accepts every mail and keeps it.
async fn smtp_sink(port: u16) -> Arc<Mutex<Vec<Mail>>> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("SMTP port free");
    let mails = Arc::new(Mutex::new(Vec::new()));
    let store = mails.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = sock.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                let mut mail = Mail { to: Vec::new(), data: String::new() };
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "RCPT" => {
                            mail.to.push(line.to_ascii_lowercase());
                            b"250 OK\r\n"
                        }
                        "DATA" => {
                            let _ = write.write_all(b"354 go ahead\r\n").await;
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                mail.data.push_str(&l);
                                mail.data.push('\n');
                            }
                            store.lock().expect("lock").push(mail.clone());
                            mail = Mail { to: Vec::new(), data: String::new() };
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"250 OK\r\n",
                    };
                    let _ = write.write_all(reply).await;
                }
            });
        }
    });
    mails
}

#[tokio::test]
async fn a_provisioned_user_with_an_email_gets_notification_emails() {
    let p = platform();
    let port: u16 = p.var("SYNAPSE_SMTP_PORT").parse().expect("SMTP port");
    let mails = smtp_sink(port).await;
    let client = kube_client().await;
    let ns = namespace(&client, "email").await;
    shared_secret_credentials(&client, &ns).await;
    let _op = Operator::start(&ns, "matrix", &[]);
    let tag = unique("m").replace('-', "");
    let email = format!("reader-{tag}@example.org");
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    for (name, spec) in [
        ("reader", json!({"username": format!("reader{tag}"), "email": email, "displayName": "Reader"})),
        ("writer", json!({"username": format!("writer{tag}"), "displayName": "Writer"})),
    ] {
        let user = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixUser",
            "metadata": {"name": name}, "spec": spec}))
        .expect("user");
        users.create(&PostParams::default(), &user).await.expect("user created");
    }
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    let link = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "SpaceRoomLink",
        "metadata": {"name": "news"},
        "spec": {"spaceGroupId": format!("news_{tag}"), "create": true, "displayName": "News",
                 "members": [format!("reader{tag}"), format!("writer{tag}")]}}))
    .expect("link");
    links.create(&PostParams::default(), &link).await.expect("link created");
    let room = eventually("both joined", Duration::from_secs(40), || async {
        let st = links.get("news").await.ok()?.status?;
        (st.joined_members == Some(2)).then_some(st.room_id?)
    })
    .await;

    // The writer posts; the reader never reads it.
    let admin = synapse_admin().await;
    let writer = format!("@writer{tag}:{}", p.server_name());
    let token = admin.login_as(&support::uid(&writer)).await.expect("writer token");
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{}", enc(&room), unique("txn"));
    let resp = reqwest::Client::new()
        .put(format!("{}{path}", p.synapse_url()))
        .bearer_auth(token.expose())
        .json(&json!({"msgtype": "m.text", "body": "Quarterly numbers are out"}))
        .send()
        .await
        .expect("message sent");
    assert!(resp.status().is_success(), "{}", resp.status());

    let mail = eventually("a notification email to the reader", Duration::from_secs(90), || async {
        mails.lock().expect("lock").iter().find(|m| m.to.iter().any(|t| t.contains(&email))).cloned()
    })
    .await;
    assert!(mail.data.contains("News") || mail.data.contains("Quarterly"), "{}", mail.data);
}
