//! The Kubernetes client, configured the way Kubernetes tools do it.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::ClusterError;

/// Builds a client from, in order: `--kubeconfig` (with `--context`); `--context`
/// alone in `$KUBECONFIG` or `~/.kube/config`; the pod's service account when
/// running in a cluster; else `$KUBECONFIG` or `~/.kube/config` (current context).
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Client, ClusterError> {
    let config = config(kubeconfig, context).await?;
    Client::try_from(config).map_err(ClusterError::BuildClient)
}

async fn config(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Config, ClusterError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    if let Some(path) = kubeconfig {
        let file = Kubeconfig::read_from(path).map_err(|source| ClusterError::ReadKubeconfig {
            path: path.to_path_buf(),
            source,
        })?;
        return Config::from_custom_kubeconfig(file, &options)
            .await
            .map_err(ClusterError::LoadKubeconfig);
    }
    if context.is_some() {
        return Config::from_kubeconfig(&options)
            .await
            .map_err(ClusterError::LoadKubeconfig);
    }
    match Config::incluster() {
        Ok(config) => Ok(config),
        Err(in_cluster) => Config::from_kubeconfig(&options)
            .await
            .map_err(|kubeconfig| ClusterError::NoConfig {
                in_cluster: in_cluster.to_string(),
                kubeconfig: kubeconfig.to_string(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: dev
clusters:
  - name: dev
    cluster: {server: "https://dev.example.com:6443"}
  - name: prod
    cluster: {server: "https://prod.example.com"}
users:
  - name: me
    user: {token: "t0ken"}
contexts:
  - name: dev
    context: {cluster: dev, user: me, namespace: team-a}
  - name: prod
    context: {cluster: prod, user: me}
"#;

    #[tokio::test]
    async fn kubeconfig_flag_and_context_pick_the_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, KUBECONFIG).unwrap();

        let current = config(Some(&path), None).await.unwrap();
        assert_eq!(
            current.cluster_url.to_string(),
            "https://dev.example.com:6443/"
        );
        assert_eq!(current.default_namespace, "team-a");

        let prod = config(Some(&path), Some("prod")).await.unwrap();
        assert_eq!(prod.cluster_url.to_string(), "https://prod.example.com/");

        let err = config(Some(&path), Some("nope")).await.unwrap_err();
        assert!(err.to_string().starts_with("failed to load"), "{err}");
        let err = config(Some(&dir.path().join("missing")), None)
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with("failed to read the kubeconfig"),
            "{err}"
        );
    }
}
