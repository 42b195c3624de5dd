//! An Aliyun KMS instance emulator: HTTPS `POST /` with protobuf bodies, checking every
//! request the way the service does (API name and version, signature method, access key id,
//! content type, date skew, content-sha256, and the RSA_PKCS1_SHA_256 signature with the
//! ClientKey's public key), answering GetSecretValue, Encrypt and Decrypt (AES-256-GCM with
//! a 12-byte server IV, key id [`KMS_KEY_ID`]) or a protobuf `Error`.
//!
//! The same listener also plays the public KMS OpenAPI for the AccessKey mode
//! (`alibaba-trustee.md` §7): `POST /?<query>` signed with signature version 1.0, checked
//! independently of coffer's signer (the string to sign is rebuilt from the received query,
//! the HMAC-SHA1 recomputed with the stored AccessKey secret), plus the service's freshness
//! rules: the timestamp within 15 minutes and each `SignatureNonce` used once. Errors are
//! JSON `{"RequestId","Code","Message"}` as the OpenAPI answers them.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use sha2::Digest;

/// Shared emulator state.
pub struct Emulator {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Requests answered 200.
    pub served: Arc<AtomicUsize>,
    /// Answer the next N requests with 503 ServiceUnavailableTemporary.
    pub fail_next: Arc<AtomicUsize>,
    /// Answer the next N GetSecretValue calls (either protocol) with 200 but no
    /// `SecretData`: a broken or hostile endpoint, which must not become an empty secret.
    pub omit_secret_data: Arc<AtomicUsize>,
    /// Encrypt and Decrypt calls answered 200.
    pub crypto_calls: Arc<AtomicUsize>,
    /// Error codes of refused AccessKey (OpenAPI) requests, in order.
    pub rpc_rejections: Arc<Mutex<Vec<String>>>,
}

/// Protobuf length-delimited fields of a request (field number → bytes).
fn fields(mut b: &[u8]) -> Option<HashMap<u32, Vec<u8>>> {
    let mut out = HashMap::new();
    let varint = |b: &mut &[u8]| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&x, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(x & 0x7f) << shift;
            if x & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    while !b.is_empty() {
        let key = varint(&mut b)?;
        match key & 7 {
            0 => {
                varint(&mut b)?;
            }
            2 => {
                let n = varint(&mut b)? as usize;
                out.insert((key >> 3) as u32, b.get(..n)?.to_vec());
                b = &b[n..];
            }
            _ => return None,
        }
    }
    Some(out)
}

fn crypto(api: &str, body: &[u8], st: &State) -> HttpResponse {
    use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};
    let Some(f) = fields(body) else {
        return error(400, "InvalidParameter", "not protobuf");
    };
    let get = |n: u32| f.get(&n).cloned().unwrap_or_default();
    let key_field = if api == "Encrypt" { 1 } else { 2 };
    if get(key_field) != KMS_KEY_ID.as_bytes() {
        return error(404, "Forbidden.KeyNotFound", "no such key");
    }
    if get(3) != b"AES_GCM" {
        return error(400, "InvalidParameter", "Algorithm");
    }
    let cipher = Cipher::aes_256_gcm();
    let mut b = Vec::new();
    put(&mut b, 1, KMS_KEY_ID.as_bytes());
    if api == "Encrypt" {
        let iv: [u8; 12] = rand::random();
        let mut tag = [0u8; 16];
        let Ok(mut ct) = encrypt_aead(cipher, &st.sym_key, Some(&iv), &[], &get(2), &mut tag)
        else {
            return error(500, "InternalFailure", "encrypt");
        };
        ct.extend_from_slice(&tag);
        put(&mut b, 2, &ct);
        put(&mut b, 3, &iv);
        put(&mut b, 4, b"emulator-request-id");
        put(&mut b, 5, b"AES_GCM");
    } else {
        let blob = get(1);
        if blob.len() < 16 {
            return error(400, "InvalidParameter", "CiphertextBlob");
        }
        let (ct, tag) = blob.split_at(blob.len() - 16);
        let Ok(pt) = decrypt_aead(cipher, &st.sym_key, Some(&get(5)), &[], ct, tag) else {
            return error(400, "InvalidParameter", "CiphertextBlob does not decrypt");
        };
        put(&mut b, 2, &pt);
        put(&mut b, 3, b"emulator-request-id");
    }
    st.crypto_calls.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(b)
}

/// The symmetric key id the emulator knows for Encrypt/Decrypt.
pub const KMS_KEY_ID: &str = "key-test-kek";

struct State {
    key_id: String,
    /// AES-256 key behind [`KMS_KEY_ID`].
    sym_key: [u8; 32],
    /// Encrypt and Decrypt calls answered 200.
    crypto_calls: Arc<AtomicUsize>,
    public: openssl::pkey::PKey<openssl::pkey::Public>,
    secrets: HashMap<String, String>,
    served: Arc<AtomicUsize>,
    fail_next: Arc<AtomicUsize>,
    omit_secret_data: Arc<AtomicUsize>,
    /// AccessKey id → secret, for the OpenAPI.
    access_keys: HashMap<String, String>,
    /// Every `SignatureNonce` accepted so far.
    nonces: Mutex<HashSet<String>>,
    rpc_rejections: Arc<Mutex<Vec<String>>>,
}

fn put(buf: &mut Vec<u8>, field: u8, data: &[u8]) {
    buf.push(field << 3 | 2);
    let mut len = data.len();
    while len >= 0x80 {
        buf.push((len as u8) | 0x80);
        len >>= 7;
    }
    buf.push(len as u8);
    buf.extend_from_slice(data);
}

fn error(status: u16, code: &str, message: &str) -> HttpResponse {
    let mut b = vec![0x08, status as u8 & 0x7f | 0x80, (status >> 7) as u8];
    put(&mut b, 2, code.as_bytes());
    put(&mut b, 3, message.as_bytes());
    put(&mut b, 4, b"emulator-request-id");
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("application/x-protobuf")
        .body(b)
}

fn first_string_field(body: &[u8]) -> Option<String> {
    // GetSecretValueRequest field 1 (SecretName) comes first when set.
    if body.first() != Some(&0x0a) {
        return None;
    }
    let len = *body.get(1)? as usize;
    String::from_utf8(body.get(2..2 + len)?.to_vec()).ok()
}

async fn handle(req: HttpRequest, body: web::Bytes, st: web::Data<State>) -> HttpResponse {
    if !req.query_string().is_empty() || req.headers().contains_key("x-acs-action") {
        return rpc(&req, &body, &st);
    }
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or("")
    };
    let api = h("x-kms-apiname").to_string();
    if !["GetSecretValue", "Encrypt", "Decrypt"].contains(&api.as_str()) {
        return error(400, "InvalidApiName", "unknown api");
    }
    if h("x-kms-apiversion") != "dkms-gcs-0.2" {
        return error(400, "InvalidApiVersion", "bad version");
    }
    if h("x-kms-signaturemethod") != "RSA_PKCS1_SHA_256" {
        return error(400, "InvalidParam", "signature method");
    }
    if h("x-kms-acccesskeyid").is_empty() {
        return error(400, "MissingParameter", "x-kms-acccesskeyid");
    }
    if h("x-kms-acccesskeyid") != st.key_id {
        return error(404, "Unauthorized", "unknown client key");
    }
    if h("content-type") != "application/x-protobuf" {
        return error(415, "InvalidContentType", "content type");
    }
    let Ok(date) = httpdate::parse_http_date(h("date")) else {
        return error(400, "InvalidParam", "date");
    };
    let skew = std::time::SystemTime::now()
        .duration_since(date)
        .unwrap_or_else(|e| e.duration());
    if skew.as_secs() > 15 * 60 {
        return error(400, "RequestTimeTooSkewed", "clock");
    }
    let sha = hex::encode_upper(sha2::Sha256::digest(&body));
    if h("content-sha256") != sha {
        return error(
            400,
            "InvalidParam",
            "content-sha256 does not match the body",
        );
    }
    let sts = format!(
        "POST\n{sha}\napplication/x-protobuf\n{}\nx-kms-acccesskeyid:{}\nx-kms-apiname:{api}\nx-kms-apiversion:dkms-gcs-0.2\nx-kms-signaturemethod:RSA_PKCS1_SHA_256\n/",
        h("date"),
        h("x-kms-acccesskeyid")
    );
    let sig = h("authorization")
        .strip_prefix("Bearer ")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    let ok = sig
        .map(|sig| {
            let mut v =
                openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &st.public)
                    .expect("verifier");
            v.update(sts.as_bytes()).is_ok() && v.verify(&sig).unwrap_or(false)
        })
        .unwrap_or(false);
    if !ok {
        return error(401, "SignatureNotMatch", "signature");
    }
    if st.fail_next.load(Ordering::SeqCst) > 0 {
        st.fail_next.fetch_sub(1, Ordering::SeqCst);
        return error(503, "ServiceUnavailableTemporary", "try later");
    }
    if api != "GetSecretValue" {
        return crypto(&api, &body, &st);
    }
    let Some(name) = first_string_field(&body) else {
        return error(400, "InvalidParameter", "SecretName");
    };
    let Some(value) = st.secrets.get(&name) else {
        return error(404, "Forbidden.ResourceNotFound", "no such secret");
    };
    st.served.fetch_add(1, Ordering::SeqCst);
    let mut b = Vec::new();
    put(&mut b, 1, name.as_bytes());
    put(&mut b, 2, b"Generic");
    if !take_one(&st.omit_secret_data) {
        put(&mut b, 3, value.as_bytes());
    }
    put(&mut b, 4, b"text");
    put(&mut b, 8, b"emulator-request-id");
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(b)
}

/// Takes one from a "the next N calls" counter; whether there was one.
fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

fn rpc_error(st: &State, status: u16, code: &str, message: &str) -> HttpResponse {
    st.rpc_rejections
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(code.to_string());
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("application/json")
        .body(
            serde_json::json!({
                "RequestId": "emulator-request-id",
                "HostId": "kms.emulator",
                "Code": code,
                "Message": message,
            })
            .to_string(),
        )
}

/// `%XX` decoding of one query component (`+` is not a space in these requests).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The OpenAPI's encoding, written the way Alibaba's documentation describes it (form
/// encoding, then `+`→`%20`, `*`→`%2A`, `%7E`→`~`) rather than as coffer's signer does.
fn openapi_encode(s: &str) -> String {
    let mut form = String::new();
    for &b in s.as_bytes() {
        match b {
            b' ' => form.push('+'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                form.push(char::from(b))
            }
            _ => form.push_str(&format!("%{b:02X}")),
        }
    }
    form.replace('+', "%20")
        .replace('*', "%2A")
        .replace("%7E", "~")
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` → Unix seconds.
fn parse_timestamp(ts: &str) -> Option<i64> {
    let ts = ts.strip_suffix('Z')?;
    let (main, frac) = ts.split_once('.').unwrap_or((ts, "0"));
    if !frac.bytes().all(|b| b.is_ascii_digit()) || main.len() != 19 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| main.get(r)?.parse::<u32>().ok();
    let date = time::Date::from_calendar_date(
        i32::try_from(n(0..4)?).ok()?,
        time::Month::try_from(u8::try_from(n(5..7)?).ok()?).ok()?,
        u8::try_from(n(8..10)?).ok()?,
    )
    .ok()?;
    let t = time::Time::from_hms(
        u8::try_from(n(11..13)?).ok()?,
        u8::try_from(n(14..16)?).ok()?,
        u8::try_from(n(17..19)?).ok()?,
    )
    .ok()?;
    Some(
        time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp(),
    )
}

fn rpc(req: &HttpRequest, body: &[u8], st: &State) -> HttpResponse {
    if req.method() != actix_web::http::Method::POST || req.path() != "/" {
        return rpc_error(st, 404, "InvalidAction.NotFound", "POST / only");
    }
    if !body.is_empty() {
        return rpc_error(st, 400, "InvalidParameter", "RPC requests carry no body");
    }
    let mut params: HashMap<String, String> = HashMap::new();
    for pair in req.query_string().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (percent_decode(k), percent_decode(v)) else {
            return rpc_error(st, 400, "InvalidParameter", "bad percent-encoding");
        };
        if params.insert(k, v).is_some() {
            return rpc_error(st, 400, "InvalidParameter", "duplicate parameter");
        }
    }
    for required in [
        "Action",
        "Version",
        "Format",
        "RegionId",
        "Timestamp",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "AccessKeyId",
        "Signature",
        "SecretName",
    ] {
        if params.get(required).is_none_or(|v| v.is_empty()) {
            return rpc_error(st, 400, &format!("Missing{required}"), required);
        }
    }
    let p = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    if p("Action") != "GetSecretValue" {
        return rpc_error(st, 404, "InvalidAction.NotFound", "only GetSecretValue");
    }
    if p("Version") != "2016-01-20" {
        return rpc_error(st, 400, "InvalidVersion", "Version must be 2016-01-20");
    }
    if p("SignatureMethod") != "HMAC-SHA1" {
        return rpc_error(
            st,
            400,
            "InvalidSignatureMethod",
            "SignatureMethod must be HMAC-SHA1",
        );
    }
    if p("SignatureVersion") != "1.0" {
        return rpc_error(
            st,
            400,
            "InvalidSignatureVersion",
            "SignatureVersion must be 1.0",
        );
    }
    let Some(secret) = st.access_keys.get(p("AccessKeyId")) else {
        return rpc_error(
            st,
            404,
            "InvalidAccessKeyId.NotFound",
            "unknown AccessKeyId",
        );
    };
    let Some(ts) = parse_timestamp(p("Timestamp")) else {
        return rpc_error(st, 400, "InvalidTimeStamp.Format", "Timestamp");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    if (now - ts).abs() > 15 * 60 {
        return rpc_error(
            st,
            400,
            "InvalidTimeStamp.Expired",
            "Timestamp too far from now",
        );
    }
    let mut sorted: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| (openapi_encode(k), openapi_encode(v)))
        .collect();
    sorted.sort();
    let canonical = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let sts = format!(
        "POST&{}&{}",
        openapi_encode("/"),
        openapi_encode(&canonical)
    );
    let expected = {
        use openssl::{hash::MessageDigest, pkey::PKey, sign::Signer};
        let key = PKey::hmac(format!("{secret}&").as_bytes()).expect("hmac key");
        let mut s = Signer::new(MessageDigest::sha1(), &key).expect("signer");
        s.update(sts.as_bytes()).expect("hmac");
        base64::engine::general_purpose::STANDARD.encode(s.sign_to_vec().expect("hmac"))
    };
    let given = p("Signature").as_bytes();
    if given.len() != expected.len() || !openssl::memcmp::eq(given, expected.as_bytes()) {
        return rpc_error(
            st,
            400,
            "SignatureDoesNotMatch",
            "the signature does not match",
        );
    }
    // Nonces are remembered only for requests whose signature holds, so nobody without the
    // secret can burn them.
    let fresh = st
        .nonces
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(p("SignatureNonce").to_string());
    if !fresh {
        return rpc_error(st, 400, "SignatureNonceUsed", "SignatureNonce already used");
    }
    if st.fail_next.load(Ordering::SeqCst) > 0 {
        st.fail_next.fetch_sub(1, Ordering::SeqCst);
        return rpc_error(st, 503, "ServiceUnavailable", "try later");
    }
    let Some(value) = st.secrets.get(p("SecretName")) else {
        return rpc_error(st, 404, "Forbidden.ResourceNotFound", "no such secret");
    };
    st.served.fetch_add(1, Ordering::SeqCst);
    let mut answer = serde_json::json!({
        "RequestId": "emulator-request-id",
        "SecretName": p("SecretName"),
        "SecretData": value,
        "SecretDataType": "text",
        "SecretType": "Generic",
        "VersionId": "v1",
        "VersionStages": {"VersionStage": ["ACSCurrent"]},
        "CreateTime": "2024-01-01T00:00:00Z",
    });
    if take_one(&st.omit_secret_data) {
        answer.as_object_mut().map(|o| o.remove("SecretData"));
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(answer.to_string())
}

/// Starts the emulator (TLS with the fixture's synthetic server certificate) in a thread.
pub fn start(data: &Path, secrets: HashMap<String, String>) -> Emulator {
    start_with_access_keys(data, secrets, HashMap::new())
}

/// As [`start`], also accepting OpenAPI (AccessKey) requests signed with one of
/// `access_keys` (id → secret).
pub fn start_with_access_keys(
    data: &Path,
    secrets: HashMap<String, String>,
    access_keys: HashMap<String, String>,
) -> Emulator {
    let public = openssl::pkey::PKey::public_key_from_pem(
        &std::fs::read(data.join("clientkey_test-id.pubkey.pem")).unwrap(),
    )
    .unwrap();
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(data.join("server-chain.pem")).unwrap(),
    ))
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(data.join("server.key")).unwrap(),
    ))
    .unwrap()
    .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let fail_next = Arc::new(AtomicUsize::new(0));
    let omit_secret_data = Arc::new(AtomicUsize::new(0));
    let crypto_calls = Arc::new(AtomicUsize::new(0));
    let rpc_rejections = Arc::new(Mutex::new(Vec::new()));
    let state = web::Data::new(State {
        access_keys,
        nonces: Mutex::new(HashSet::new()),
        rpc_rejections: rpc_rejections.clone(),
        key_id: "test-id".into(),
        sym_key: rand::random(),
        crypto_calls: crypto_calls.clone(),
        public,
        secrets,
        served: served.clone(),
        fail_next: fail_next.clone(),
        omit_secret_data: omit_secret_data.clone(),
    });
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            actix_web::HttpServer::new(move || {
                actix_web::App::new()
                    .app_data(state.clone())
                    .default_service(web::to(handle))
            })
            .workers(1)
            .listen_rustls_0_23(listener, tls)
            .expect("listen")
            .run()
            .await
        })
    });
    Emulator {
        port,
        served,
        fail_next,
        omit_secret_data,
        crypto_calls,
        rpc_rejections,
    }
}
