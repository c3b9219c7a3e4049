//! Access tokens the server must refuse: each is a 401 problem with a
//! `WWW-Authenticate: Bearer` challenge, never a 500.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Claims like the server's, valid now, for the seeded user.
fn claims(app: &TestApp) -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    json!({
        "sub": app.users.user.id, "role": "user", "jti": uuid::Uuid::now_v7(),
        "iat": now, "nbf": now, "exp": now + 600,
        "iss": "rampart", "aud": "rampart-api", "fam": uuid::Uuid::now_v7(),
    })
}

/// Signs `claims` with the server's own key and `kid`, as a forger who
/// stole nothing could not, to isolate each claim check.
fn signed(app: &TestApp, kid: &str, claims: &Value) -> String {
    let key = EncodingKey::from_ed_pem(&app.signing_key_pem()).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, &key).unwrap()
}

async fn assert_refused(app: &TestApp, token: &str, why: &str) {
    let response = app.get_as("/api/profile", token).await;
    assert_eq!(response.status, 401, "{why}: {}", response.body);
    response.assert_problem(401);
    assert!(response.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")), "{why}: no challenge");
}

#[tokio::test]
async fn forged_and_malformed_tokens_are_refused() {
    let app = spawn_app().await;
    let good = app.token_for(&app.users.user).await;
    assert_eq!(app.get_as("/api/profile", &good).await.status, 200);
    let kid = jsonwebtoken::decode_header(&good).unwrap().kid.unwrap();
    // The control: a token signed with the real key and fresh claims works.
    assert_eq!(app.get_as("/api/profile", &signed(&app, &kid, &claims(&app))).await.status, 200);

    let parts: Vec<&str> = good.split('.').collect();
    let payload: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();

    // alg: none, unsigned.
    let none_header = b64(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string().as_bytes());
    assert_refused(&app, &format!("{none_header}.{}.", parts[1]), "alg none").await;

    // HS256 keyed with the public key (the classic algorithm confusion).
    let jwks = app.get("/.well-known/jwks.json").await.json();
    let public_x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    for secret in [public_x.as_bytes().to_vec(), jwks.to_string().into_bytes(), b"secret".to_vec(), b"rampart".to_vec()]
    {
        let forged = encode(&hs_header, &payload, &EncodingKey::from_secret(&secret)).unwrap();
        assert_refused(&app, &forged, "HS256 forgery").await;
    }

    // Another algorithm than the configured one, with a key of its own.
    let es_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap().serialize_pem();
    let mut es_header = Header::new(Algorithm::ES256);
    es_header.kid = Some(kid.clone());
    let es = encode(&es_header, &payload, &EncodingKey::from_ec_pem(es_key.as_bytes()).unwrap()).unwrap();
    assert_refused(&app, &es, "ES256 instead of EdDSA").await;

    // A valid signature, then the payload changed to role=admin.
    let mut elevated = payload.clone();
    elevated["role"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(elevated.to_string().as_bytes()), parts[2]);
    assert_refused(&app, &tampered, "tampered role").await;
    let admin_area = app.get_as("/api/admin/users", &tampered).await;
    assert_eq!(admin_area.status, 401);

    // Claims checks, with genuine signatures.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut expired = claims(&app);
    expired["exp"] = json!(now - 120);
    expired["iat"] = json!(now - 1000);
    expired["nbf"] = json!(now - 1000);
    assert_refused(&app, &signed(&app, &kid, &expired), "expired").await;
    let mut early = claims(&app);
    early["nbf"] = json!(now + 3600);
    assert_refused(&app, &signed(&app, &kid, &early), "nbf in the future").await;
    let mut issuer = claims(&app);
    issuer["iss"] = json!("someone-else");
    assert_refused(&app, &signed(&app, &kid, &issuer), "wrong iss").await;
    let mut audience = claims(&app);
    audience["aud"] = json!("another-api");
    assert_refused(&app, &signed(&app, &kid, &audience), "wrong aud").await;
    let mut missing = claims(&app);
    missing.as_object_mut().unwrap().remove("jti");
    assert_refused(&app, &signed(&app, &kid, &missing), "missing jti").await;

    // Key ids that try to reach outside the key map.
    for bad_kid in ["../../../../etc/passwd", "/dev/null", "file:///etc/shadow", &"k".repeat(5000)] {
        assert_refused(&app, &signed(&app, bad_kid, &claims(&app)), "bad kid").await;
    }

    // Garbage of every shape.
    for garbage in ["garbage", "a.b.c", "...", "eyJhbGciOiJFZERTQSJ9", &"x".repeat(10_000), "Bearer", "é.é.é"] {
        assert_refused(&app, garbage, "garbage").await;
    }
    let basic = app.send(app.client.get(app.url("/api/profile")).header("authorization", "Basic dXNlcjpwYXNz")).await;
    basic.assert_problem(401);
}

#[tokio::test]
async fn tokens_of_deleted_disabled_or_signed_out_users_are_refused() {
    let app = spawn_app().await;
    let admin = app.token_for(&app.users.admin).await;

    let other = app.token_for(&app.users.other).await;
    let deleted =
        app.send(app.client.delete(app.url(&format!("/api/users/{}", app.users.other.id))).bearer_auth(&admin)).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_refused(&app, &other, "deleted user").await;

    let manager = app.token_for(&app.users.manager).await;
    let path = format!("/api/admin/users/{}", app.users.manager.id);
    let disabled =
        app.send(app.client.patch(app.url(&path)).bearer_auth(&admin).json(&json!({"disabled": true}))).await;
    assert_eq!(disabled.status, 200, "{}", app.logs.contents());
    assert_refused(&app, &manager, "disabled user").await;

    let user = &app.users.user;
    let logged_out = app.token_for(user).await;
    app.send(app.client.post(app.url("/auth/logout")).bearer_auth(&logged_out)).await;
    assert_refused(&app, &logged_out, "after logout").await;

    let everywhere = app.token_for(user).await;
    let kept_elsewhere = app.token_for(user).await;
    app.send(app.client.post(app.url("/auth/logout-all")).bearer_auth(&everywhere)).await;
    assert_refused(&app, &kept_elsewhere, "after logout-all").await;

    let before_change = app.token_for(user).await;
    let change = app
        .send(
            app.client
                .put(app.url("/api/profile/password"))
                .bearer_auth(&before_change)
                .json(&json!({"current_password": user.password, "new_password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(change.status, 204, "{}", change.body);
    assert_refused(&app, &before_change, "after password change").await;
    app.post_json("/auth/login", &json!({"email": user.email, "password": user.password})).await.assert_problem(401);
    app.login(&user.email, "a brand new passphrase").await;
}

/// A forged token (the real key id, fresh claims, a signature that does
/// not match them) from `from`, via the trusted proxy header.
async fn forged_from(app: &TestApp, from: &str, real: &str) -> u16 {
    let mut parts: Vec<String> = real.split('.').map(str::to_owned).collect();
    let mut fresh = claims(app);
    fresh["jti"] = json!(uuid::Uuid::now_v7());
    parts[1] = b64(fresh.to_string().as_bytes());
    let forged = parts.join(".");
    let request = app.client.get(app.url("/api/profile")).bearer_auth(forged).header("x-forwarded-for", from);
    app.send(request).await.status
}

/// A client that keeps sending tokens that fail verification gets no more
/// signature checks for a minute: its tokens the server has not verified
/// before are refused unchecked (a valid new one too), the ones it has
/// still work, and other clients are not affected.
#[tokio::test]
async fn a_client_flooding_forged_tokens_stops_costing_signature_checks() {
    let clock = rampart::clock::ManualClock::new(time::OffsetDateTime::now_utc());
    let app = crate::helpers::spawn_with(|options| {
        options.clock = std::sync::Arc::new(clock.clone());
        options.config.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let flooder = "198.51.100.66";
    let as_client = |token: &str, from: &str| {
        app.send(app.client.get(app.url("/api/profile")).bearer_auth(token).header("x-forwarded-for", from))
    };
    let known = app.token_for(&app.users.user).await;
    assert_eq!(as_client(&known, flooder).await.status, 200, "verified once, now cached");
    for _ in 0..100 {
        assert_eq!(forged_from(&app, flooder, &known).await, 401);
    }
    let fresh = app.token_for(&app.users.other).await;
    assert_eq!(as_client(&fresh, flooder).await.status, 401, "not checked: the client is over its failures");
    assert_eq!(as_client(&known, flooder).await.status, 200, "a token verified before still works");
    assert_eq!(as_client(&fresh, "198.51.100.67").await.status, 200, "another client is checked as always");
    let unseen = app.token_for(&app.users.manager).await;
    assert_eq!(as_client(&unseen, flooder).await.status, 401);
    clock.advance(time::Duration::seconds(60));
    assert_eq!(as_client(&unseen, flooder).await.status, 200, "checked again in the next window");
}
