//! Registry credentials from where Docker users keep them: the client
//! config `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, with its
//! `auths`, `credsStore` and `credHelpers` (read by the `docker_credential`
//! crate, which runs the configured `docker-credential-*` helper). The
//! secret only travels to the daemon with the pull request: it is never
//! logged, journaled or printed, and errors name the registry and the
//! helper, never what a helper said.

use docker_credential::{CredentialRetrievalError, DockerCredential};

use crate::docker::RegistryAuth;

/// The login for `registry` (`ghcr.io`, `127.0.0.1:5000`, `docker.io`), or
/// `None` when the config has none (an anonymous pull). A config that has
/// one but cannot be read is an error, worded without the secret.
pub fn for_registry(registry: &str) -> Result<Option<RegistryAuth>, String> {
    // Docker's config keys Docker Hub by its v1 index URL.
    let key = if registry == "docker.io" { "https://index.docker.io/v1/" } else { registry };
    let auth = |username, password, identity_token| RegistryAuth {
        server: key.to_string(),
        username,
        password,
        identity_token,
    };
    match docker_credential::get_credential(key) {
        Ok(DockerCredential::UsernamePassword(user, password)) => Ok(Some(auth(Some(user), Some(password), None))),
        Ok(DockerCredential::IdentityToken(token)) => Ok(Some(auth(None, None, Some(token)))),
        Err(CredentialRetrievalError::NoCredentialConfigured | CredentialRetrievalError::ConfigNotFound) => Ok(None),
        // The crate says the same for a missing file and a broken one. A
        // missing config means no login (an anonymous pull); one that is
        // there but unreadable may hold the login, and pulling anonymously
        // would only fail later with a confusing refusal.
        Err(CredentialRetrievalError::ConfigReadError) => match config_path().filter(|p| p.exists()) {
            None => Ok(None),
            Some(path) => Err(format!(
                "the Docker client config {} cannot be read, so the login for {registry} cannot be looked up",
                path.display()
            )),
        },
        // The helper protocol's answer for "no login stored here"; the docker
        // CLI then pulls anonymously, and so does swap.
        Err(CredentialRetrievalError::HelperFailure { ref stdout, .. }) if stdout.contains("credentials not found") => {
            Ok(None)
        }
        // Its message would carry the helper's stdout and stderr.
        Err(CredentialRetrievalError::HelperFailure { helper, .. }) => {
            Err(format!("the credential helper {helper} failed for {registry}"))
        }
        Err(e) => Err(format!("the Docker config's login for {registry} is unusable: {e}")),
    }
}

/// Where the Docker client keeps its config: `$DOCKER_CONFIG/config.json`,
/// else `~/.docker/config.json`.
fn config_path() -> Option<std::path::PathBuf> {
    match std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        Some(dir) => Some(std::path::PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".docker/config.json")),
    }
}
