//! Upstream Trustee's KBS as a second target in the same run: started from a binary built by
//! `scripts/build-trustee-kbs.sh`, with the built-in attestation service, the sample verifier,
//! LocalFs storage (sessions included, Trustee's default) and an allow-all resource policy —
//! the same work per handshake as coffer-server's benchmark setup.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

/// A running Trustee KBS, stopped on drop.
pub(crate) struct TrusteeKbs {
    child: Child,
    /// Base URL.
    pub url: String,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl TrusteeKbs {
    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for TrusteeKbs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `binary` under `dir` and stores `secret` at `resource` (`repo/type/tag`).
pub(crate) async fn start(
    binary: &Path,
    dir: &Path,
    resource: &str,
    secret: &[u8],
) -> anyhow::Result<TrusteeKbs> {
    let port = free_port()?;
    let storage = dir.join("trustee-storage");
    std::fs::create_dir_all(&storage)?;
    let config = dir.join("trustee-kbs.toml");
    std::fs::write(
        &config,
        format!(
            r#"[http_server]
sockets = ["127.0.0.1:{port}"]
insecure_http = true

[attestation_token]
insecure_header_jwk = true

[attestation_service]
type = "coco_as_builtin"

[attestation_service.attestation_token_broker]
duration_min = 5

[attestation_service.rvps_config]
type = "BuiltIn"

[admin]
authorization_mode = "InsecureAllowAll"

[storage_backend]
storage_type = "LocalFs"

[storage_backend.backends.local_fs]
dir_path = "{}"

[[plugins]]
name = "resource"
storage_backend_type = "kvstorage"
"#,
            storage.display()
        ),
    )?;
    let log = dir.join("trustee-kbs.log");
    let child = Command::new(binary)
        .arg("--config-file")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start Trustee's KBS {}: {e}", binary.display()))?;
    let kbs = TrusteeKbs {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let put = format!("{}/kbs/v0/resource/{resource}", kbs.url);
    loop {
        match http.post(&put).body(secret.to_vec()).send().await {
            Ok(r) if r.status().is_success() => break,
            Ok(r) => anyhow::bail!(
                "Trustee's KBS refused the resource upload: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => anyhow::bail!(
                "Trustee's KBS did not answer within 30 s ({e}); see {}",
                kbs.log.display()
            ),
        }
    }
    let policy =
        "package policy\n\ndefault allow = false\n\nallow if {\n\tdata.plugin == \"resource\"\n}\n";
    let body = serde_json::json!({
        "policy": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(policy)
    });
    let r = http
        .post(format!("{}/kbs/v0/resource-policy", kbs.url))
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(
        r.status().is_success(),
        "Trustee's KBS refused the allow-all resource policy: {} {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
    Ok(kbs)
}
