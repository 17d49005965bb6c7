//! Action keys: the sha256 of a canonical encoding of everything that can change a build's
//! output. Equal keys mean the recorded outputs are reused without running anything.
//! Worth copying: one serialisable struct of inputs, a schema number, a diff that says what
//! changed, and a test that changes every input once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::base::Digest;

/// Bumped whenever the encoding or the meaning of an input changes, so old entries stop
/// matching instead of being misread.
pub const SCHEMA: u32 = 1;

/// The inputs of an action, as hashed. Digests of things that are not blobs (a path
/// source's tree) are plain hex so they are not mistaken for blob references.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyInputs {
    pub schema: u32,
    pub recipe: String,
    /// The build-relevant part of the recipe: workdir, steps. Description, timeout and the
    /// unselected outputs do not change what a build produces and are left out.
    pub build: Value,
    pub source: Value,
    /// Patch name and content digest, in application order.
    pub patches: Vec<(String, String)>,
    /// The toolchain rootfs blob, pinned image reference, or `host`.
    pub toolchain: String,
    /// `container` or `host`.
    pub executor: String,
    /// Embedded script name (as the build sees it) and content digest.
    pub embed: Option<(String, String)>,
    /// Trusted CA certificates (`trust:`): file name and content digest. Left out when
    /// there are none, so recipes without them keep their keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust: Vec<(String, String)>,
    pub vars: BTreeMap<String, String>,
    pub targets: Vec<String>,
    /// SOURCE_DATE_EPOCH when set by the recipe; otherwise derived from the source.
    pub epoch: Option<i64>,
}

impl KeyInputs {
    /// The action key: sha256 over the JSON form, whose object keys serde_json sorts.
    pub fn key(&self) -> String {
        let value = serde_json::to_value(self).expect("inputs serialise");
        Digest::of(value.to_string().as_bytes()).hex()
    }

    /// Human-readable differences from an earlier set of inputs, for `plan`.
    pub fn diff(&self, old: &KeyInputs) -> Vec<String> {
        let new = serde_json::to_value(self).expect("inputs serialise");
        let old = serde_json::to_value(old).expect("inputs serialise");
        let mut out = Vec::new();
        diff_values("", &old, &new, &mut out);
        out
    }
}

fn diff_values(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_values(
                    &p,
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ => out.push(format!("{path}: {} → {}", short(old), short(new))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        s.chars().take(77).collect::<String>() + "..."
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KeyInputs {
        KeyInputs {
            schema: SCHEMA,
            recipe: "r".into(),
            build: serde_json::json!({"steps": [["make"]]}),
            source: serde_json::json!({"kind": "git", "rev": "a"}),
            patches: vec![],
            toolchain: "sha256:00".into(),
            executor: "container".into(),
            embed: Some(("e.ipxe".into(), "11".into())),
            trust: vec![],
            vars: BTreeMap::new(),
            targets: vec!["a".into()],
            epoch: None,
        }
    }

    #[test]
    fn every_input_changes_the_key() {
        let base = inputs();
        let k = base.key();
        assert_eq!(k, inputs().key(), "deterministic");
        // No certificates, no `trust` field: keys made before it existed still hold.
        assert!(!serde_json::to_string(&base).unwrap().contains("trust"));
        let mut variants = Vec::new();
        let mut i = inputs();
        i.embed = Some(("e.ipxe".into(), "12".into()));
        variants.push(i);
        let mut i = inputs();
        i.trust = vec![("ca.pem".into(), "13".into())];
        variants.push(i);
        let mut i = inputs();
        i.vars.insert("X".into(), "1".into());
        variants.push(i);
        let mut i = inputs();
        i.toolchain = "sha256:01".into();
        variants.push(i);
        let mut i = inputs();
        i.targets = vec![];
        variants.push(i);
        let mut i = inputs();
        i.epoch = Some(1);
        variants.push(i);
        let mut i = inputs();
        i.patches = vec![("p".into(), "00".into())];
        variants.push(i);
        let mut i = inputs();
        i.executor = "host".into();
        variants.push(i);
        for v in variants {
            assert_ne!(v.key(), k, "{:?}", v.diff(&base));
            assert_eq!(v.diff(&base).len(), 1, "{:?}", v.diff(&base));
        }
    }
}
