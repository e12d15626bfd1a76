//! Service account tokens: the TokenRequest API (`kubectl create token NAME`) issues JWTs the
//! server verifies on later requests. Signed with HMAC-SHA256 by a key only this server holds
//! (upstream signs with an RSA/ECDSA key so that others can verify; nothing outside berth verifies
//! these yet). A token is only good while its ServiceAccount exists with the same uid.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::rbac::User;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn mac(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).ok()?;
    m.update(data);
    Some(m.finalize().into_bytes().to_vec())
}

/// A signed token for the service account `namespace/name` (uid `uid`) valid `seconds` from now.
pub fn issue(key: &[u8], namespace: &str, name: &str, uid: &str, audiences: &[String], seconds: i64) -> Option<(String, i64)> {
    let now = chrono::Utc::now().timestamp();
    let exp = now + seconds;
    let aud: Vec<String> = if audiences.is_empty() { vec![ISSUER.to_string()] } else { audiences.to_vec() };
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let claims = json!({
        "iss": ISSUER, "sub": format!("system:serviceaccount:{namespace}:{name}"), "aud": aud,
        "iat": now, "nbf": now, "exp": exp,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
    });
    let signing_input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let sig = mac(key, signing_input.as_bytes())?;
    Some((format!("{signing_input}.{}", b64(&sig)), exp))
}

/// The claims of a token this server signed and that has not expired.
pub fn verify(key: &[u8], token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()?;
    let mut m = Hmac::<Sha256>::new_from_slice(key).ok()?;
    m.update(format!("{h}.{c}").as_bytes());
    // verify_slice compares in constant time.
    m.verify_slice(&sig).ok()?;
    let claims: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    let now = chrono::Utc::now().timestamp();
    (claims["exp"].as_i64()? > now && claims["iss"] == ISSUER).then_some(claims)
}

/// The user a verified token names, with upstream's groups.
pub fn user_of(claims: &Value) -> Option<User> {
    let ns = claims["kubernetes.io"]["namespace"].as_str()?;
    Some(User {
        name: claims["sub"].as_str()?.to_string(),
        groups: vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}"), "system:authenticated".into()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_name_the_service_account() {
        let key = b"0123456789abcdef0123456789abcdef";
        let (token, exp) = issue(key, "a", "robot", "uid-1", &[], 600).expect("issue");
        assert!(exp > chrono::Utc::now().timestamp());
        let claims = verify(key, &token).expect("verifies");
        let user = user_of(&claims).expect("user");
        assert_eq!(user.name, "system:serviceaccount:a:robot");
        assert!(user.groups.contains(&"system:serviceaccounts:a".to_string()));
        assert_eq!(claims["kubernetes.io"]["serviceaccount"]["uid"], "uid-1");
    }

    #[test]
    fn forged_expired_and_garbage_tokens_are_refused() {
        let key = b"0123456789abcdef0123456789abcdef";
        let (token, _) = issue(key, "a", "robot", "u", &[], 600).expect("issue");
        assert!(verify(b"another key entirely, 32 bytes!!", &token).is_none());
        let (old, _) = issue(key, "a", "robot", "u", &[], -10).expect("issue");
        assert!(verify(key, &old).is_none());
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_claims = b64(br#"{"sub":"system:serviceaccount:kube-system:admin","exp":9999999999,"iss":"https://kubernetes.default.svc.cluster.local"}"#);
        parts[1] = &forged_claims;
        assert!(verify(key, &parts.join(".")).is_none());
        assert!(verify(key, "not.a.token.at-all").is_none() && verify(key, "").is_none());
    }
}
