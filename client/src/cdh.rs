//! Resources through a confidential-containers guest's Confidential Data Hub (CDH).
//!
//! In a CoCo pod the guest's own Attestation Agent attests to the KBS and the CDH serves
//! the released resources on a local REST API (guest-components' api-server-rest,
//! `GET /cdh/resource/{repository}/{type}/{tag}`, the raw bytes as the answer). Containers
//! there cannot reach the TEE themselves, so `coffer model decrypt --cdh` takes the key from
//! it instead of attesting.

use coffer_protocol::ResourcePath;
use zeroize::Zeroizing;

use crate::ClientError;

/// A resource's bytes from the CDH at `base_url` (in a CoCo guest guest-components' REST
/// API listens on `http://127.0.0.1:8006`).
pub async fn get_resource(
    http: &reqwest::Client,
    base_url: &str,
    path: &ResourcePath,
) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    let [repo, kind, tag] = path.segments();
    let url = format!(
        "{}/cdh/resource/{repo}/{kind}/{tag}",
        base_url.trim_end_matches('/')
    );
    let unreachable = |source| ClientError::CdhUnreachable {
        url: url.clone(),
        source,
    };
    let resp = http.get(&url).send().await.map_err(unreachable)?;
    let status = resp.status();
    let body = Zeroizing::new(resp.bytes().await.map_err(unreachable)?.to_vec());
    if !status.is_success() {
        // The CDH's error bodies are short diagnostics, never the resource.
        let text = String::from_utf8_lossy(&body).chars().take(300).collect();
        return Err(ClientError::Cdh {
            url,
            status: status.as_u16(),
            body: text,
        });
    }
    Ok(body)
}
