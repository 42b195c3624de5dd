//! `coffer launch SERVICE.json`: from a PAI-EAS service JSON to a serving, measured model.
//!
//! Steps, each timed on stderr: detect the TEE, attest to `trustee_endpoint`, fetch
//! `decryption_key`, decrypt every gocryptfs `storage[]` entry into its `mount_path`
//! (a tmpfs where possible), check and record the model digest (AAEL event + RTMR3), then
//! exec the container's `script`. Any failure removes what was decrypted and exits with the
//! step's code.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use coffer::model::{self, KeySource, RunOptions, TreeTotals};
use coffer::service::{resolve_source, Encryption, Service, SourceMap};
use coffer::ClientError;
use coffer_cryptfs::tree::DecryptOptions;
use coffer_cryptfs::ModelDigest;
use coffer_protocol::ResourcePath;
use zeroize::Zeroizing;

use crate::{tee_client_for, Cli, CliTee, TeeArgs};

/// When to mount a tmpfs on `mount_path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum TmpfsMode {
    /// Mount one (sized to the model, `huge=within_size`) unless `mount_path` already is a
    /// mount point or this process may not mount; then decrypt into the directory.
    Auto,
    /// Never mount; decrypt into the directory as it is.
    Never,
}

/// Arguments of `coffer launch`.
#[derive(Args)]
pub(crate) struct LaunchArgs {
    /// The EAS service JSON, unchanged (confidential.trustee_endpoint,
    /// confidential.decryption_key, storage[] with encryption.method, oss.path and
    /// mount_path, containers[].script and env; other fields are ignored).
    service: PathBuf,
    /// Where an `oss.path` is on this machine: `oss://bucket/dir=/local/dir` (repeatable,
    /// longest prefix wins). A local `oss.path` is read directly.
    #[arg(long = "source", value_name = "PREFIX=DIR")]
    sources: Vec<SourceMap>,
    /// Attest to this KBS instead of `confidential.trustee_endpoint`.
    #[arg(long, value_name = "URL")]
    trustee_endpoint: Option<String>,
    /// Mount a tmpfs on each mount_path (auto) or never.
    #[arg(long, value_enum, default_value = "auto")]
    tmpfs: TmpfsMode,
    /// The model digest each decrypted tree must have: `HEX`, or `MOUNT_PATH=HEX` when the
    /// service has several encrypted entries (repeatable). A mismatch removes the plaintext
    /// and exits with code 9.
    #[arg(long, value_name = "[MOUNT_PATH=]HEX")]
    expect_digest: Vec<String>,
    /// Fetch the expected digest (hex, first line) from the KBS after the key, e.g.
    /// kbs:///default/aliyun/model-digest (one encrypted entry only).
    #[arg(long, value_name = "RESOURCE", conflicts_with = "expect_digest")]
    digest_resource: Option<ResourcePath>,
    /// `model-id` of the recorded `pai/load-model` event (PAI's policy looks up
    /// `measurement.model.<model-id>`) [default: the last component of oss.path].
    #[arg(long, value_name = "ID")]
    model_id: Option<String>,
    /// Do not record the model digest in the TD's measurements.
    #[arg(long)]
    no_measure: bool,
    /// sysfs directory of the TDX measurement registers (RTMR3 is extended through its
    /// `rtmr3:sha384`).
    #[arg(long, env = "COFFER_TSM_MEASUREMENTS_DIR", default_value = coffer::measure::TSM_MEASUREMENTS_DIR)]
    tsm_measurements_dir: PathBuf,
    /// Use the confidential-containers Confidential Data Hub at URL (in a CoCo guest
    /// http://127.0.0.1:8006): it attests and returns the key, and records the event
    /// (`POST /aa/aael`) in its Attestation Agent's log.
    #[arg(long, value_name = "URL")]
    cdh: Option<String>,
    /// Attempts after the first when the KBS is unreachable or answers 5xx (backoff 0.5 s,
    /// doubling, at most 8 s).
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Decryption worker threads [default: two per core].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    #[command(flatten)]
    tee: TeeArgs,
}

/// A storage entry coffer does not decrypt.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unsupported(String);

fn step(name: &str, started: Instant, detail: &str) {
    eprintln!(
        "coffer launch: {name:<8} {:>8.3} s  {detail}",
        started.elapsed().as_secs_f64()
    );
}

/// A decryption destination made ready, and what to undo on failure.
struct Dest {
    path: PathBuf,
    mounted: bool,
    created: bool,
}

impl Dest {
    /// Removes everything decrypted into it (unmounting the tmpfs coffer mounted drops it
    /// whole).
    fn wipe(&self) {
        let _ = model::remove_contents(&self.path);
        if self.mounted {
            let _ = rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH);
        }
        if self.created {
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

fn is_mount_point(p: &Path) -> bool {
    let Some(parent) = p.parent() else {
        return true;
    };
    match (std::fs::metadata(p), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Makes `path` ready for `needed` plaintext bytes: it must be missing or empty (so a
/// failure can remove everything); with `auto`, a tmpfs sized to the model is mounted
/// there unless it already is a mount point. Short space is refused before any write.
fn prepare(path: &Path, needed: u64, mode: TmpfsMode) -> Result<(Dest, String), anyhow::Error> {
    if !model::is_empty_or_missing(path).with_context(|| path.display().to_string())? {
        anyhow::bail!(
            "{} is not empty: coffer launch decrypts only into an empty or new directory, so that a failure can remove everything it wrote",
            path.display()
        );
    }
    let created = !path.exists();
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut dest = Dest {
        path: path.to_path_buf(),
        mounted: false,
        created,
    };
    let mut how = "directory".to_string();
    if mode == TmpfsMode::Auto && !is_mount_point(path) {
        if let Some(avail) = mem_available() {
            if needed > avail {
                dest.wipe();
                return Err(ClientError::NoSpace(format!(
                    "{}: the model needs {} but only {} of memory is available for a tmpfs",
                    path.display(),
                    model::human_bytes(needed),
                    model::human_bytes(avail)
                ))
                .into());
            }
        }
        // Room for the tree's directories and rounding beyond the file contents.
        let size = needed + (needed / 50).max(64 << 20);
        let mounted = ["huge=within_size,", ""].iter().find_map(|huge| {
            let data =
                std::ffi::CString::new(format!("size={size},mode=0755,{huge}nr_inodes=0")).ok()?;
            rustix::mount::mount(
                "coffer",
                path,
                "tmpfs",
                rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
                data.as_c_str(),
            )
            .map(|_| huge.is_empty())
            .map_err(|e| how = format!("directory (no tmpfs: {e})"))
            .ok()
        });
        if let Some(plain_pages) = mounted {
            dest.mounted = true;
            how = if plain_pages {
                format!("tmpfs {}", model::human_bytes(size))
            } else {
                format!("tmpfs {} huge=within_size", model::human_bytes(size))
            };
        }
    }
    if let Err(e) = model::check_space(path, needed) {
        dest.wipe();
        return Err(e.into());
    }
    Ok((dest, how))
}

fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Transport { .. } | ClientError::CdhUnreachable { .. } => true,
        ClientError::Kbs { status, .. } => *status >= 500,
        _ => false,
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((500u64 << attempt.min(4)).min(8000))
}

/// The expected digest for the entry at `mount_path`, from `--expect-digest`.
fn expected_for(
    args: &[String],
    mount_path: &Path,
    entries: usize,
) -> anyhow::Result<Option<ModelDigest>> {
    for a in args {
        let (target, hex) = match a.rsplit_once('=') {
            Some((p, h)) => (Some(Path::new(p)), h),
            None => (None, a.as_str()),
        };
        let d = ModelDigest::from_hex(hex)
            .with_context(|| format!("--expect-digest {a}: expected 64 hex digits"))?;
        match target {
            Some(p) if p == mount_path => return Ok(Some(d)),
            Some(_) => {}
            None if entries == 1 => return Ok(Some(d)),
            None => anyhow::bail!(
                "--expect-digest {a}: the service has {entries} encrypted entries; write MOUNT_PATH=HEX"
            ),
        }
    }
    Ok(None)
}

/// Default `model-id`: the last path component of the entry's source.
fn default_model_id(source: &str) -> String {
    source
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("model")
        .to_string()
}

/// Runs `coffer launch`; returns only on failure (success replaces the process).
pub(crate) async fn run(cli: &Cli, http: reqwest::Client, a: &LaunchArgs) -> anyhow::Result<()> {
    let total = Instant::now();
    let svc = Service::load(&a.service)?;
    // Everything that can be refused without the network is refused first.
    let mut plan = Vec::new();
    for e in &svc.encrypted {
        let at = format!("{}: storage[{}]", a.service.display(), e.index);
        match &e.method {
            Encryption::Gocryptfs => {}
            Encryption::Sam => {
                return Err(Unsupported(format!(
                    "{at}: encryption.method \"sam\" is Alibaba's proprietary model format, which has no public specification; coffer decrypts gocryptfs only (re-encrypt with `coffer model encrypt`)"
                ))
                .into())
            }
            Encryption::Other(m) => {
                return Err(Unsupported(format!(
                    "{at}: encryption.method {m:?} is not supported (gocryptfs is)"
                ))
                .into())
            }
        }
        let cipher = resolve_source(&e.source, &a.sources).ok_or_else(|| {
            Unsupported(format!(
                "{at}: oss.path {} is not on this machine: map it with --source {}=/local/dir",
                e.source,
                e.source.trim_end_matches('/')
            ))
        })?;
        if !cipher.join("gocryptfs.conf").is_file() {
            anyhow::bail!(
                "{at}: {} (from oss.path {}) is not a gocryptfs cipher directory (no gocryptfs.conf)",
                cipher.display(),
                e.source
            );
        }
        let expected = expected_for(&a.expect_digest, &e.mount_path, svc.encrypted.len())?;
        plan.push((e.clone(), cipher, expected));
    }
    if a.digest_resource.is_some() && plan.len() != 1 {
        anyhow::bail!("--digest-resource needs exactly one encrypted storage entry");
    }
    if a.model_id.is_some() && plan.len() != 1 {
        anyhow::bail!("--model-id needs exactly one encrypted storage entry (the default is the last component of each oss.path)");
    }
    for i in &svc.plain_storage {
        eprintln!("coffer launch: storage[{i}] has no encryption block: left to the platform");
    }

    // TEE.
    let t = Instant::now();
    let paths = crate::tdx_paths(&a.tee);
    let tee_name = match (a.tee.tee, &a.cdh) {
        (_, Some(_)) => "attested by the Confidential Data Hub".to_string(),
        (CliTee::Auto, None) if paths.detect() => "tdx".to_string(),
        (CliTee::Auto, None) => {
            return Err(ClientError::NoTee(format!(
                "neither {} nor {}",
                paths.tsm_report_dir.display(),
                paths.tdx_guest.display()
            ))
            .into())
        }
        (CliTee::Sample, None) => "sample (development only: production policies refuse it)".into(),
        (CliTee::Tdx, None) => "tdx".to_string(),
    };
    step("tee", t, &tee_name);

    // Attest and fetch the key (and the expected digest).
    let endpoint = a
        .trustee_endpoint
        .clone()
        .unwrap_or_else(|| svc.trustee_endpoint.clone());
    let (password, digest_text) = match &a.cdh {
        Some(cdh) => {
            let t = Instant::now();
            let pw = with_retry(a.retries, "key", || {
                coffer::cdh::get_resource(&http, cdh, &svc.decryption_key)
            })
            .await?;
            step("key", t, &format!("{} via {cdh}", svc.decryption_key));
            let d = match &a.digest_resource {
                Some(r) => Some(
                    with_retry(a.retries, "digest", || {
                        coffer::cdh::get_resource(&http, cdh, r)
                    })
                    .await?,
                ),
                None => None,
            };
            (pw, d)
        }
        None => {
            let mut client = tee_client_for(cli, http.clone(), &a.tee, &endpoint)?;
            let t = Instant::now();
            let mut attempt = 0;
            loop {
                match client.attest().await {
                    Ok(_) => break,
                    Err(e) if transient(&e) && attempt < a.retries => {
                        let wait = backoff(attempt);
                        eprintln!(
                            "coffer launch: attest: {e}; retrying in {:.1} s",
                            wait.as_secs_f64()
                        );
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    Err(e) => return Err(anyhow::Error::new(e).context("attest")),
                }
            }
            step("attest", t, &endpoint);
            let t = Instant::now();
            let pw = client
                .get_resource(&svc.decryption_key)
                .await
                .context("key")?;
            step("key", t, &svc.decryption_key.to_string());
            let d = match &a.digest_resource {
                Some(r) => Some(client.get_resource(r).await.context("expected digest")?),
                None => None,
            };
            (pw, d)
        }
    };
    let password = model::password_from_bytes(&password);
    if let Some(text) = &digest_text {
        let line = model::password_from_bytes(text);
        let d = std::str::from_utf8(&line)
            .ok()
            .and_then(ModelDigest::from_hex)
            .context("the digest resource does not hold a model digest (64 hex digits)")?;
        plan[0].2 = Some(d);
    }

    // Decrypt every entry; on any failure remove everything decrypted so far.
    let mut done: Vec<Dest> = Vec::new();
    let mut digests = Vec::new();
    let wipe_all = |done: &[Dest]| done.iter().for_each(Dest::wipe);
    for (entry, cipher, expected) in &plan {
        match decrypt_entry(entry.mount_path.as_path(), cipher, &password, *expected, a) {
            Ok((dest, digest)) => {
                done.push(dest);
                digests.push(digest);
            }
            Err(e) => {
                wipe_all(&done);
                return Err(e.context(format!("decrypt {}", entry.mount_path.display())));
            }
        }
    }

    // Record what was loaded.
    let t = Instant::now();
    let mut recorded = Vec::new();
    for ((entry, _, _), digest) in plan.iter().zip(&digests) {
        let id = a
            .model_id
            .clone()
            .unwrap_or_else(|| default_model_id(&entry.source));
        let content = coffer::measure::load_model_content(&id, &digest.to_hex());
        let r = if a.no_measure {
            Ok("not recorded (--no-measure)".to_string())
        } else if let Some(cdh) = &a.cdh {
            coffer::measure::record_via_cdh(
                &http,
                cdh,
                coffer::measure::PAI_DOMAIN,
                coffer::measure::PAI_LOAD_MODEL,
                &content,
            )
            .await
            .map(|_| format!("AAEL via {cdh}"))
        } else if a.tee.tee == CliTee::Sample {
            Ok("not recorded (the sample TEE has no measurement registers)".to_string())
        } else {
            coffer::measure::record_direct(
                &a.tsm_measurements_dir,
                &a.tee.aael,
                coffer::measure::PAI_DOMAIN,
                coffer::measure::PAI_LOAD_MODEL,
                &content,
            )
            .map(|_| format!("AAEL {} + RTMR3", a.tee.aael.display()))
        };
        match r {
            Ok(how) => recorded.push(format!(
                "{} model-id {id} hash {digest}: {how}",
                entry.mount_path.display()
            )),
            Err(e) => {
                wipe_all(&done);
                return Err(anyhow::Error::new(e).context("measure"));
            }
        }
    }
    step("measure", t, &recorded.join("; "));

    let (ci, script) = &svc.script;
    eprintln!(
        "coffer launch: time to serving {:.3} s; exec containers[{ci}].script",
        total.elapsed().as_secs_f64()
    );
    let err = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .envs(svc.env.iter().map(|(k, v)| (k, v)))
        .exec();
    // exec returned, so the script never started: nothing will serve the plaintext.
    wipe_all(&done);
    Err(anyhow::Error::new(err).context(format!("cannot run containers[{ci}].script with /bin/sh")))
}

async fn with_retry<T, F, Fut>(retries: u32, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && attempt < retries => {
                let wait = backoff(attempt);
                eprintln!(
                    "coffer launch: {what}: {e}; retrying in {:.1} s",
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(what.to_string())),
        }
    }
}

/// Decrypts one entry into its mount path and checks its digest; the destination is wiped
/// on any failure.
fn decrypt_entry(
    mount_path: &Path,
    cipher: &Path,
    password: &Zeroizing<Vec<u8>>,
    expected: Option<ModelDigest>,
    a: &LaunchArgs,
) -> anyhow::Result<(Dest, ModelDigest)> {
    let t = Instant::now();
    let needed = TreeTotals::of_cipher(cipher).bytes;
    let (dest, how) = prepare(mount_path, needed, a.tmpfs)?;
    let opts = RunOptions {
        threads: a.threads.map_or_else(model::default_threads, usize::from),
        tree: DecryptOptions::default(),
    };
    let decrypted = model::decrypt(
        cipher,
        mount_path,
        KeySource::Password(password.clone()),
        opts,
        &|_| {},
    );
    let report = match decrypted {
        Ok(r) => r,
        Err(e) => {
            dest.wipe();
            return Err(e.into());
        }
    };
    for f in &report.summary.failures {
        eprintln!("FAILED {}: {}", f.cipher_path.display(), f.error);
    }
    let report = match report.into_result() {
        Ok(r) => r,
        Err(e) => {
            dest.wipe();
            return Err(anyhow::Error::new(e).context(format!(
                "the model failed authentication (tampered or corrupt ciphertext); nothing was left in {}",
                mount_path.display()
            )));
        }
    };
    let s = &report.summary;
    let Some(digest) = s.digest else {
        dest.wipe();
        anyhow::bail!("no model digest was computed");
    };
    if let Some(want) = expected {
        if want != digest {
            dest.wipe();
            return Err(ClientError::DigestMismatch {
                tree: cipher.to_path_buf(),
                expected: want,
                actual: digest,
            }
            .into());
        }
    }
    let rate = s.bytes as f64 / report.seconds.max(1e-9) / 1e9;
    step(
        "decrypt",
        t,
        &format!(
            "{}: {} files, {} in {:.3} s, {rate:.2} GB/s ({how}){}",
            mount_path.display(),
            s.files,
            model::human_bytes(s.bytes),
            report.seconds,
            if expected.is_some() {
                "; digest as expected"
            } else {
                ""
            }
        ),
    );
    Ok((dest, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_digests_pick_their_entry() {
        let h = "ab".repeat(32);
        let d = ModelDigest::from_hex(&h).unwrap();
        assert_eq!(
            expected_for(std::slice::from_ref(&h), Path::new("/m"), 1).unwrap(),
            Some(d)
        );
        assert!(expected_for(std::slice::from_ref(&h), Path::new("/m"), 2).is_err());
        let targeted = vec![format!("/a={h}")];
        assert_eq!(
            expected_for(&targeted, Path::new("/a"), 2).unwrap(),
            Some(d)
        );
        assert_eq!(expected_for(&targeted, Path::new("/b"), 2).unwrap(), None);
        assert!(expected_for(&["xyz".into()], Path::new("/m"), 1).is_err());
    }

    #[test]
    fn model_ids_default_to_the_source_directory() {
        assert_eq!(default_model_id("oss://bucket/qwen2-7b/"), "qwen2-7b");
        assert_eq!(default_model_id("/mnt/cipher"), "cipher");
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(10), Duration::from_millis(8000));
    }
}
