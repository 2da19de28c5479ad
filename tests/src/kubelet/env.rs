//! Container environment the way a kubelet builds it: `env` (values, downward-API `fieldRef`s, ConfigMap and Secret
//! keys), `envFrom`, and `$(VAR)` expansion in values, `command` and `args`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::Api;

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("env {var}: unsupported fieldRef {path}")]
    FieldPath { var: String, path: String },
    #[error("env {var}: {kind} {name} has no key {key}")]
    MissingKey {
        var: String,
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("env {var}: reading {kind} {name}: {source}")]
    Api {
        var: String,
        kind: &'static str,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("env {var}: resourceFieldRef is not supported by the test kubelet")]
    ResourceField { var: String },
}

/// What a pod knows about itself at container start.
#[derive(Debug, Clone)]
pub struct PodFacts {
    pub pod_ip: String,
    pub host_ip: String,
}

fn bracketed<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    let rest = rest.strip_prefix("['")?.strip_suffix("']")?;
    Some(rest)
}

/// Resolves a downward-API field path.
pub fn field_ref(pod: &Pod, facts: &PodFacts, var: &str, path: &str) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let v = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        p => {
            if let Some(k) = bracketed(p, "metadata.labels") {
                meta.labels.as_ref().and_then(|l| l.get(k).cloned()).unwrap_or_default()
            } else if let Some(k) = bracketed(p, "metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(k).cloned())
                    .unwrap_or_default()
            } else {
                return Err(EnvError::FieldPath {
                    var: var.to_owned(),
                    path: p.to_owned(),
                });
            }
        }
    };
    Ok(v)
}

/// Expands `$(NAME)` from `env` (unknown references stay as written, `$$` is a literal `$`), like the kubelet.
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = s[i + 2..].find(')') {
                    let name = &s[i + 2..i + 2 + end];
                    match env.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&s[i..i + 3 + end]),
                    }
                    i += 3 + end;
                    continue;
                }
            }
        }
        // Copy one UTF-8 character.
        let ch_len = s[i..].chars().next().map(char::len_utf8).unwrap_or(1);
        out.push_str(&s[i..i + ch_len]);
        i += ch_len;
    }
    out
}

fn bytes_to_string(b: &k8s_openapi::ByteString) -> String {
    String::from_utf8_lossy(&b.0).into_owned()
}

/// Builds a container's environment (without the host's).
pub async fn container_env(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
) -> Result<BTreeMap<String, String>, EnvError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut env = BTreeMap::new();

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let name = r.name.clone();
            match cms.get_opt(&name).await {
                Ok(Some(cm)) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        env.insert(format!("{prefix}{k}"), v);
                    }
                }
                Ok(None) if r.optional == Some(true) => {}
                Ok(None) => {
                    return Err(EnvError::MissingKey {
                        var: "envFrom".into(),
                        kind: "ConfigMap",
                        name,
                        key: "*".into(),
                    })
                }
                Err(source) => {
                    return Err(EnvError::Api {
                        var: "envFrom".into(),
                        kind: "ConfigMap",
                        name,
                        source: Box::new(source),
                    })
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            let name = r.name.clone();
            match secrets.get_opt(&name).await {
                Ok(Some(s)) => {
                    for (k, v) in s.data.unwrap_or_default() {
                        env.insert(format!("{prefix}{k}"), bytes_to_string(&v));
                    }
                }
                Ok(None) if r.optional == Some(true) => {}
                Ok(None) => {
                    return Err(EnvError::MissingKey {
                        var: "envFrom".into(),
                        kind: "Secret",
                        name,
                        key: "*".into(),
                    })
                }
                Err(source) => {
                    return Err(EnvError::Api {
                        var: "envFrom".into(),
                        kind: "Secret",
                        name,
                        source: Box::new(source),
                    })
                }
            }
        }
    }

    for e in container.env.iter().flatten() {
        let var = e.name.clone();
        let value = if let Some(v) = &e.value {
            expand(v, &env)
        } else if let Some(src) = &e.value_from {
            if let Some(f) = &src.field_ref {
                field_ref(pod, facts, &var, &f.field_path)?
            } else if let Some(r) = &src.config_map_key_ref {
                let cm = cms.get_opt(&r.name).await.map_err(|source| EnvError::Api {
                    var: var.clone(),
                    kind: "ConfigMap",
                    name: r.name.clone(),
                    source: Box::new(source),
                })?;
                match cm.and_then(|c| c.data).and_then(|d| d.get(&r.key).cloned()) {
                    Some(v) => v,
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(EnvError::MissingKey {
                            var,
                            kind: "ConfigMap",
                            name: r.name.clone(),
                            key: r.key.clone(),
                        })
                    }
                }
            } else if let Some(r) = &src.secret_key_ref {
                let s = secrets.get_opt(&r.name).await.map_err(|source| EnvError::Api {
                    var: var.clone(),
                    kind: "Secret",
                    name: r.name.clone(),
                    source: Box::new(source),
                })?;
                match s.and_then(|c| c.data).and_then(|d| d.get(&r.key).map(bytes_to_string)) {
                    Some(v) => v,
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(EnvError::MissingKey {
                            var,
                            kind: "Secret",
                            name: r.name.clone(),
                            key: r.key.clone(),
                        })
                    }
                }
            } else {
                return Err(EnvError::ResourceField { var });
            }
        } else {
            String::new()
        };
        env.insert(var, value);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_kubelet() {
        let mut env = BTreeMap::new();
        env.insert("POD_IP".to_string(), "198.18.0.5".to_string());
        assert_eq!(expand("--bind $(POD_IP)", &env), "--bind 198.18.0.5");
        assert_eq!(expand("$(MISSING)x", &env), "$(MISSING)x");
        assert_eq!(expand("$$(POD_IP)", &env), "$(POD_IP)");
        assert_eq!(expand("a$(", &env), "a$(");
        assert_eq!(expand("é$(POD_IP)", &env), "é198.18.0.5");
    }
}
