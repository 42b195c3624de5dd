//! `coffer launch SERVICE.json` end to end: a model encrypted by the real gocryptfs, a
//! service JSON in the PAI-EAS guide's shape, the real coffer-server with the TDX test PKI
//! and Alibaba's PAI policy, a fake configfs-tsm with fake sysfs RTMRs, and a tiny HTTP
//! "inference server" started from the JSON's script. Then: the next attestation shows the
//! model, every failure has its exit code and leaves mount_path clean, and a swapped file is
//! caught by the model digest.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use coffer_integration::fake_tsm::{FakeRtmrs, FakeTsm, FakeTsmOptions};
use coffer_integration::tdx_mint::{CollateralOptions, TdFields, TestPki};
use coffer_integration::{binary, exit_code, Exit, Server};
use coffer_tdx::eventlog::{aael_record, spec_id_header, EventLog};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery staple";
const RES: &str = "default/aliyun/model-decryption-key";
const MODEL_ID: &str = "qwen-enc";

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

struct FuseMount<'a>(&'a Path);
impl Drop for FuseMount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3").arg("-u").arg(self.0).status();
    }
}

/// Unmounts (lazily) whatever `coffer launch` or the test mounted there.
struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The plaintext model: a config, a multi-chunk weights file, a nested tokenizer.
fn make_model(root: &Path) {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    w("config.json", br#"{"architectures": ["Qwen2ForCausalLM"]}"#);
    let weights: Vec<u8> = (0..3 * 1024 * 1024 + 77)
        .map(|i: usize| (i * 13 + i / 4096) as u8)
        .collect();
    w("model.safetensors", &weights);
    w("tokenizer/tokenizer.json", br#"{"version": "1.0"}"#);
    w("tokenizer/vocab.txt", b"hello\nworld\n");
}

/// Encrypts `plain` into `cipher` with the real gocryptfs (init, mount, copy, unmount).
fn gocryptfs_encrypt(plain: &Path, cipher: &Path, pw_file: &Path, scratch: &Path) {
    let mnt = scratch.join("gocryptfs-mnt");
    std::fs::create_dir_all(cipher).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    run(Command::new("gocryptfs")
        .args(["-init", "-q", "-scryptn", "10", "-passfile"])
        .arg(pw_file)
        .arg(cipher));
    run(Command::new("gocryptfs")
        .args(["-q", "-passfile"])
        .arg(pw_file)
        .arg(cipher)
        .arg(&mnt));
    let _m = FuseMount(&mnt);
    run(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", plain.display()))
        .arg(&mnt));
}

/// A model encrypted by the real gocryptfs under `<root>/oss/qwen-enc` (what
/// `oss://examplebucket/qwen-enc/` is mapped to), with its plaintext and digest.
struct Model {
    plain: PathBuf,
    oss: PathBuf,
    cipher: PathBuf,
    pw_file: PathBuf,
    digest: String,
}

fn model(root: &Path) -> Model {
    let plain = root.join("plain");
    make_model(&plain);
    let oss = root.join("oss");
    let cipher = oss.join(MODEL_ID);
    let pw_file = root.join("pw");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).unwrap();
    gocryptfs_encrypt(&plain, &cipher, &pw_file, root);
    let out = run(Command::new(binary("coffer"))
        .args(["model", "digest", "-q", "--password-file"])
        .arg(&pw_file)
        .arg(&cipher));
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(digest.len(), 64, "{digest}");
    Model {
        plain,
        oss,
        cipher,
        pw_file,
        digest,
    }
}

/// A service JSON in the PAI-EAS guide's shape (fields coffer does not use included).
fn service_json(endpoint: &str, mount: &Path, port_file: &Path) -> Value {
    json!({
        "cloud": {"computing": {"instances": [{"type": "ecs.gn8v-tee.4xlarge"}]}},
        "confidential": {
            "trustee_endpoint": endpoint,
            "decryption_key": format!("kbs:///{RES}")
        },
        "containers": [{
            "image": "eas-registry-vpc.cn-hangzhou.cr.aliyuncs.com/pai-eas/vllm:v0.8.5",
            "port": 8000,
            "script": format!("exec \"$MODEL_SERVER\" {} \"$PORT_FILE\"", mount.display()),
            "env": [
                {"name": "MODEL_SERVER", "value": binary("coffer-test-model-server").display().to_string()},
                {"name": "PORT_FILE", "value": port_file.display().to_string()},
                {"name": "GREETING", "value": "served from the TD"}
            ]
        }],
        "metadata": {"cpu": 16, "gpu": 1, "instance": 1, "memory": 64000, "name": "qwen_enc_service"},
        "storage": [{
            "encryption": {"method": "gocryptfs"},
            "mount_path": mount.display().to_string(),
            "oss": {"path": format!("oss://examplebucket/{MODEL_ID}/"), "readOnly": false},
            "properties": {"resource_burstable": "true"}
        }]
    })
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn get(port: u16, path: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}{path}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

/// Waits for the launched script to write its port; panics with coffer's stderr if the
/// process ends first.
fn wait_for_port(child: &mut Child, port_file: &Path, stderr_file: &Path) -> u16 {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(port_file) {
            return s.trim().parse().unwrap();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "coffer launch ended with {status} before serving:\n{}",
                std::fs::read_to_string(stderr_file).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no port after 120 s:\n{}",
            std::fs::read_to_string(stderr_file).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn claims_of(token: &str) -> Value {
    let payload = token.trim().split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn policy(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../policy-engine/tests/fixtures/alibaba")
        .join(name)
        .display()
        .to_string()
}

/// Lists everything below `dir` (empty when it is missing).
fn listing(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn mounted_at(p: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let sep = f.iter().position(|x| *x == "-")?;
        (Path::new(f[4]) == p).then(|| f[sep + 1].to_string())
    })
}

#[test]
fn launch_serves_the_model_and_the_next_attestation_proves_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let m = model(root);

    // coffer-server with the TDX test PKI and Alibaba's PAI policy, the model registered.
    let pki = Arc::new(TestPki::new());
    let config = pki.offline_dcap_config(root, &CollateralOptions::current());
    let server = Server::start_with_args(root, Some(&config), &["--path-prefix", "/my-trustee"]);
    server.admin(&["set-resource", RES, "--file", m.pw_file.to_str().unwrap()]);
    server.admin(&[
        "set-attestation-policy",
        "--file",
        &policy("pai_default.rego"),
        "--id",
        "default",
    ]);
    server.admin(&[
        "set-reference-value",
        &format!("measurement.model.{MODEL_ID}"),
        &format!("[\"{}\"]", m.digest),
    ]);
    server.admin(&[
        "set-resource-policy",
        "--file",
        &policy("kbs_default_resource_policy.rego"),
    ]);

    // The TD booted with one earlier runtime event; its RTMRs follow the fake registers.
    let aael = root.join("run/attestation-agent/eventlog");
    std::fs::create_dir_all(aael.parent().unwrap()).unwrap();
    let boot = aael_record("coffer.test", "boot", "instance-started").unwrap();
    std::fs::write(&aael, &boot).unwrap();
    let mut log = spec_id_header();
    log.extend_from_slice(&boot);
    let rtmrs = FakeRtmrs::start(root, EventLog::parse(&log).unwrap().replay().unwrap());
    let values = rtmrs.values.clone();
    let tsm = FakeTsm::start(
        &root.join("tsm"),
        FakeTsmOptions::default(),
        Arc::new(move |rd| {
            let fields = TdFields {
                rtmrs: *values.lock().unwrap(),
                report_data: rd,
                ..Default::default()
            };
            pki.quote(&fields)
        }),
    );
    let tee: Vec<String> = vec![
        "--tee".into(),
        "tdx".into(),
        "--tsm-report-dir".into(),
        tsm.report_dir().display().to_string(),
        "--ccel".into(),
        root.join("no-ccel").display().to_string(),
        "--aael".into(),
        aael.display().to_string(),
    ];

    let mount = root.join("models/qwen");
    let _unmount = Unmount(mount.clone());
    let port_file = root.join("port");
    let svc = root.join("service.json");
    write_json(
        &svc,
        &service_json(&format!("{}/my-trustee", server.url), &mount, &port_file),
    );
    let stderr_file = root.join("launch.stderr");
    let mut child = Command::new(binary("coffer"))
        .arg("launch")
        .arg(&svc)
        .arg("--source")
        .arg(format!("oss://examplebucket={}", m.oss.display()))
        .arg("--tsm-measurements-dir")
        .arg(rtmrs.dir())
        .arg("--expect-digest")
        .arg(&m.digest)
        .args(&tee)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_file).unwrap())
        .spawn()
        .unwrap();
    let port = wait_for_port(&mut child, &port_file, &stderr_file);

    // The script runs in coffer's place (exec: same pid) with the JSON's environment, and
    // serves the decrypted model.
    assert_eq!(get(port, "/pid"), child.id().to_string());
    assert_eq!(get(port, "/env/GREETING"), "served from the TD");
    assert_eq!(
        get(port, "/model/config.json").as_bytes(),
        std::fs::read(m.plain.join("config.json")).unwrap()
    );
    assert_eq!(get(port, "/model/tokenizer/vocab.txt"), "hello\nworld\n");
    assert_eq!(
        mounted_at(&mount).as_deref(),
        Some("tmpfs"),
        "mount_path is a tmpfs"
    );
    let err = std::fs::read_to_string(&stderr_file).unwrap();
    for step in [
        "tee ",
        "attest ",
        "key ",
        "decrypt ",
        "GB/s",
        "measure ",
        "time to serving",
    ] {
        assert!(err.contains(step), "no {step:?} line in:\n{err}");
    }
    assert!(err.contains(&m.digest), "{err}");

    // The AAEL now ends with the model event, and replaying it gives the fake RTMR3.
    let recorded = std::fs::read(&aael).unwrap();
    let content = json!({"model-id": MODEL_ID, "hash": m.digest}).to_string();
    let event = aael_record("trustiflux.alibaba.com", "pai/load-model", &content).unwrap();
    assert_eq!(recorded, [boot.clone(), event].concat());
    let mut log = spec_id_header();
    log.extend_from_slice(&recorded);
    let replayed = EventLog::parse(&log).unwrap().replay().unwrap();
    // The fake extends asynchronously after the write; give it a moment.
    let start = Instant::now();
    while *rtmrs.values.lock().unwrap() != replayed && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        *rtmrs.values.lock().unwrap(),
        replayed,
        "RTMRs match the replayed log"
    );

    // The next attestation of this instance shows the model; PAI's policy finds it
    // registered (executables 3).
    let mut args = vec!["attest".to_string()];
    args.extend(tee.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = server.coffer(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims = claims_of(&String::from_utf8(out.stdout).unwrap());
    let cpu = &claims["submods"]["cpu0"];
    assert_eq!(
        cpu["ear.trustworthiness-vector"]["executables"], 3,
        "{cpu:#}"
    );
    let events = cpu["ear.veraison.annotated-evidence"]["tdx"]["uefi_event_logs"]
        .as_array()
        .unwrap();
    let load = events
        .iter()
        .find(|e| e["details"]["data"]["operation"] == "pai/load-model")
        .unwrap_or_else(|| panic!("no pai/load-model event in {events:#?}"));
    assert_eq!(load["details"]["data"]["domain"], "trustiflux.alibaba.com");
    assert_eq!(load["details"]["data"]["content"]["model-id"], MODEL_ID);
    assert_eq!(
        load["details"]["data"]["content"]["hash"],
        m.digest.as_str()
    );

    // Exit codes pass through: the script's exit is coffer's.
    assert_eq!(get(port, "/exit/42"), "bye");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42));
}

/// A sample-TEE service for the failure cases: the server allows everything unless told
/// otherwise.
struct Failing {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    server: Server,
    m: Model,
}

fn failing() -> Failing {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let m = model(&root);
    let server = Server::start(&root, None);
    server.admin(&["set-resource", RES, "--file", m.pw_file.to_str().unwrap()]);
    server.admin(&["set-resource-policy", "--allow-all"]);
    Failing {
        _tmp: tmp,
        root,
        server,
        m,
    }
}

impl Failing {
    /// Runs `coffer launch` on a fresh service file; returns the output and the mount path.
    fn launch(&self, name: &str, endpoint: &str, extra: &[&str]) -> (Output, PathBuf) {
        let mount = self.root.join("models").join(name);
        let svc = self.root.join(format!("{name}.json"));
        let mut v = service_json(endpoint, &mount, &self.root.join(format!("{name}.port")));
        // A script that ends at once, for the runs that get that far.
        v["containers"][0]["script"] = json!("exit 0");
        write_json(&svc, &v);
        let out = Command::new(binary("coffer"))
            .arg("launch")
            .arg(&svc)
            .arg("--source")
            .arg(format!("oss://examplebucket={}", self.m.oss.display()))
            .args(extra)
            .output()
            .unwrap();
        (out, mount)
    }
}

fn assert_fails(out: &Output, code: Exit, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), exit_code(code), "{err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in:\n{err}");
    }
}

#[test]
fn each_failure_has_its_exit_code_and_leaves_mount_path_clean() {
    let f = failing();
    let url = f.server.url.clone();
    let sample = ["--tee", "sample", "--tmpfs", "never"];

    // Works at all (the baseline the failures differ from): exits with the script's code.
    let mount = f.root.join("models/ok");
    let svc = f.root.join("ok.json");
    let mut v = service_json(&url, &mount, &f.root.join("ok.port"));
    v["containers"][0]["script"] = json!(format!(
        "test -f {}/config.json && exit 17",
        mount.display()
    ));
    write_json(&svc, &v);
    let out = Command::new(binary("coffer"))
        .arg("launch")
        .arg(&svc)
        .arg("--source")
        .arg(format!("oss://examplebucket={}", f.m.oss.display()))
        .args(sample)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(17),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // No TEE and no --tee sample: 10.
    let none = f.root.join("none").display().to_string();
    let (out, mount) = f.launch(
        "notee",
        &url,
        &[
            "--tsm-report-dir",
            &none,
            "--tdx-guest",
            &none,
            "--tmpfs",
            "never",
        ],
    );
    assert_fails(&out, Exit::NoTee, &["no TEE", "--tee sample"]);
    assert!(listing(&mount).is_empty());

    // KBS unreachable, after the bounded retries: 5.
    let (out, mount) = f.launch(
        "down",
        "http://127.0.0.1:9/eas",
        &[&sample[..], &["--retries", "1"]].concat(),
    );
    assert_fails(&out, Exit::Unavailable, &["attest", "retrying"]);
    assert!(listing(&mount).is_empty());

    // Policy refusal, with the KBS's reason: 3.
    let deny = f.root.join("deny.rego");
    std::fs::write(&deny, "package policy\ndefault allow := false\n").unwrap();
    f.server
        .admin(&["set-resource-policy", "--file", deny.to_str().unwrap()]);
    let (out, mount) = f.launch("refused", &url, &sample);
    assert_fails(&out, Exit::Refused, &["key", "PolicyDeny"]);
    assert!(listing(&mount).is_empty());
    f.server.admin(&["set-resource-policy", "--allow-all"]);

    // Wrong key: 7.
    let wrong = f.root.join("wrong");
    std::fs::write(&wrong, "not the password\n").unwrap();
    f.server
        .admin(&["set-resource", RES, "--file", wrong.to_str().unwrap()]);
    let (out, mount) = f.launch("wrongkey", &url, &sample);
    assert_fails(&out, Exit::WrongKey, &["wrong password"]);
    assert!(listing(&mount).is_empty(), "{:?}", listing(&mount));
    f.server
        .admin(&["set-resource", RES, "--file", f.m.pw_file.to_str().unwrap()]);

    // No space: a 1 MiB tmpfs (already a mount point, so used as it is): 8.
    let small = f.root.join("models/small");
    std::fs::create_dir_all(&small).unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "coffer-test"])
        .arg(&small));
    let _u = Unmount(small.clone());
    let svc = f.root.join("small.json");
    write_json(
        &svc,
        &service_json(&url, &small, &f.root.join("small.port")),
    );
    let out = Command::new(binary("coffer"))
        .arg("launch")
        .arg(&svc)
        .arg("--source")
        .arg(format!("oss://examplebucket={}", f.m.oss.display()))
        .args(["--tee", "sample"])
        .output()
        .unwrap();
    assert_fails(&out, Exit::NoSpace, &["free", "needs"]);
    assert!(listing(&small).is_empty());

    // Sam is refused before anything happens: 1, and a missing field is named.
    let svc = f.root.join("sam.json");
    let mut v = service_json(&url, &f.root.join("models/sam"), &f.root.join("sam.port"));
    v["storage"][0]["encryption"]["method"] = json!("sam");
    write_json(&svc, &v);
    let out = Command::new(binary("coffer"))
        .args(["launch", svc.to_str().unwrap(), "--tee", "sample"])
        .output()
        .unwrap();
    assert_fails(
        &out,
        Exit::Failure,
        &["storage[0]", "\"sam\"", "no public specification"],
    );
    v["storage"][0]["encryption"]["method"] = json!("gocryptfs");
    v["confidential"]
        .as_object_mut()
        .unwrap()
        .remove("trustee_endpoint");
    write_json(&svc, &v);
    let out = Command::new(binary("coffer"))
        .args(["launch", svc.to_str().unwrap(), "--tee", "sample"])
        .output()
        .unwrap();
    assert_fails(
        &out,
        Exit::Failure,
        &["sam.json", "confidential.trustee_endpoint", "missing"],
    );

    // A swapped file: every block authenticates, the digest does not match: 9.
    let tree_files = |dir: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("gocryptfs.")
            })
            .collect();
        v.sort();
        v
    };
    let files = tree_files(&f.m.cipher);
    assert_eq!(
        files.len(),
        2,
        "config.json and model.safetensors at the top"
    );
    let (a, b) = (&files[0], &files[1]);
    let t = f.root.join("swap.tmp");
    std::fs::rename(a, &t).unwrap();
    std::fs::rename(b, a).unwrap();
    std::fs::rename(&t, b).unwrap();
    let (out, mount) = f.launch(
        "swapped",
        &url,
        &[&sample[..], &["--expect-digest", &f.m.digest]].concat(),
    );
    assert_fails(&out, Exit::DigestMismatch, &["digest", &f.m.digest]);
    assert!(listing(&mount).is_empty(), "{:?}", listing(&mount));
    // Without the expected digest the swap goes unnoticed by the format itself.
    let (out, mount) = f.launch(
        "swapped-unchecked",
        &url,
        &["--tee", "sample", "--tmpfs", "never"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!listing(&mount).is_empty());
    std::fs::rename(a, &t).unwrap();
    std::fs::rename(b, a).unwrap();
    std::fs::rename(&t, b).unwrap();

    // Tampered ciphertext names the file and the block: 6; a tmpfs coffer mounted is gone.
    let big = files
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(big).unwrap();
    let at = 18 + 300 * (4096 + 32) + 100;
    bytes[at] ^= 0x40;
    std::fs::write(big, &bytes).unwrap();
    let mount = f.root.join("models/tampered");
    let _u2 = Unmount(mount.clone());
    let (out, mount) = f.launch("tampered", &url, &["--tee", "sample"]);
    assert_fails(
        &out,
        Exit::Tampered,
        &["block 300", &big.file_name().unwrap().to_string_lossy()],
    );
    assert!(listing(&mount).is_empty());
    assert_eq!(mounted_at(&mount), None, "the tmpfs was unmounted");
}

/// The digest `coffer model encrypt` prints is the one `coffer model digest` computes for
/// the tree it wrote; decrypt --expect-digest catches a deleted, an added and a truncated
/// file and removes its output.
#[test]
fn model_digest_binds_the_whole_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let plain = root.join("plain");
    make_model(&plain);
    let pw = root.join("pw");
    std::fs::write(&pw, "pw\n").unwrap();
    let cipher = root.join("cipher");
    let coffer = |args: &[&str]| Command::new(binary("coffer")).args(args).output().unwrap();
    let (pw_s, cipher_s) = (pw.to_str().unwrap(), cipher.to_str().unwrap());
    let out = coffer(&[
        "model",
        "encrypt",
        plain.to_str().unwrap(),
        cipher_s,
        "--password-file",
        pw_s,
        "--scryptn",
        "10",
        "-q",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let digest = |c: &str| {
        let out = coffer(&["model", "digest", c, "--password-file", pw_s, "-q"]);
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap().trim().to_string(),
        )
    };
    assert_eq!(
        digest(cipher_s),
        (exit_code(Exit::Success), printed.clone())
    );

    let decrypt = |name: &str| {
        let dest = root.join(name);
        let out = coffer(&[
            "model",
            "decrypt",
            cipher_s,
            dest.to_str().unwrap(),
            "--password-file",
            pw_s,
            "-q",
            "--expect-digest",
            &printed,
        ]);
        (out, dest)
    };
    let (out, dest) = decrypt("ok");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dest.join("config.json")).unwrap(),
        std::fs::read(plain.join("config.json")).unwrap()
    );

    // Truncated at a block boundary (authenticates block by block), deleted, added.
    let files: Vec<PathBuf> = std::fs::read_dir(&cipher)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("gocryptfs.")
        })
        .collect();
    let big = files
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
        .clone();
    let original = std::fs::read(&big).unwrap();
    std::fs::write(&big, &original[..18 + 10 * (4096 + 32)]).unwrap();
    let (out, dest) = decrypt("truncated");
    assert_eq!(
        out.status.code(),
        exit_code(Exit::DigestMismatch),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dest.exists(), "output removed");
    std::fs::remove_file(&big).unwrap();
    let (out, dest) = decrypt("deleted");
    assert_eq!(out.status.code(), exit_code(Exit::DigestMismatch));
    assert!(!dest.exists());
    std::fs::write(&big, &original).unwrap();
    assert_eq!(digest(cipher_s).1, printed, "restored");
    // Added: a file written into the tree through a gocryptfs mount (an older or newer
    // version of the tree with one more file); every entry authenticates.
    let mnt = root.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mount = |f: &dyn Fn()| {
        run(Command::new("gocryptfs")
            .args(["-q", "-passfile", pw_s, cipher_s])
            .arg(&mnt));
        let _m = FuseMount(&mnt);
        f();
    };
    mount(&|| std::fs::write(mnt.join("extra.bin"), b"not part of the model").unwrap());
    let (out, dest) = decrypt("added");
    assert_eq!(
        out.status.code(),
        exit_code(Exit::DigestMismatch),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dest.exists());
    mount(&|| std::fs::remove_file(mnt.join("extra.bin")).unwrap());
    assert_eq!(digest(cipher_s).1, printed, "restored again");
}

/// In a confidential-containers pod: the key and the expected digest come through the
/// Confidential Data Hub (which attests for the pod), and the event is recorded through its
/// `POST /aa/aael`. A digest resource that names another model stops the launch.
#[test]
fn launch_through_the_confidential_data_hub_with_the_digest_from_the_kbs() {
    let f = failing();
    let cdh = coffer_integration::cdh_emulator::Cdh::start(&f.server.url);
    let digest_file = f.root.join("digest");
    std::fs::write(&digest_file, format!("{}\n", f.m.digest)).unwrap();
    f.server.admin(&[
        "set-resource",
        "default/aliyun/model-digest",
        "--file",
        digest_file.to_str().unwrap(),
    ]);
    let args = [
        "--cdh",
        &cdh.url,
        "--digest-resource",
        "kbs:///default/aliyun/model-digest",
        "--tmpfs",
        "never",
    ];
    // The endpoint in the JSON is not used: the CDH talks to the KBS.
    let (out, mount) = f.launch("cdh", "http://127.0.0.1:9/unused", &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(mount.join("config.json").is_file());
    assert_eq!(
        cdh.hits.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "key and digest"
    );
    let events = cdh.events.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["domain"], "trustiflux.alibaba.com");
    assert_eq!(events[0]["operation"], "pai/load-model");
    let content: Value = serde_json::from_str(events[0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, json!({"model-id": MODEL_ID, "hash": f.m.digest}));

    std::fs::write(&digest_file, format!("{}\n", "0".repeat(64))).unwrap();
    f.server.admin(&[
        "set-resource",
        "default/aliyun/model-digest",
        "--file",
        digest_file.to_str().unwrap(),
    ]);
    let (out, mount) = f.launch("cdh-other", "http://127.0.0.1:9/unused", &args);
    assert_fails(&out, Exit::DigestMismatch, &["digest"]);
    assert!(listing(&mount).is_empty());
    assert_eq!(
        cdh.events.lock().unwrap().len(),
        1,
        "nothing recorded for a refused model"
    );
}
