//! `DescribePullThroughCacheRules` and `DescribeRepositoryCreationTemplates`,
//! answered by the proxy in moto's place (moto 5.2.5 implements neither), the
//! way ECR answers them (AWS ECR API reference): JSON 1.1 bodies, pages of at
//! most `maxResults` (default 100) with an opaque `nextToken`.
//!
//! Every request's shape is checked: the operation's fields only (the
//! templates call has no `registryId`), a 12-digit `registryId` for the rules
//! call, `maxResults` within 1..=1000, and only `nextToken`s this proxy
//! issued. What is wrong is recorded ([`PullThrough::shape_errors`]) and
//! answered with ECR's `InvalidParameterException`.
//!
//! The templates call reads the caller's own registry, as on AWS: the caller's
//! account is that of the request's access key id, which is moto's account
//! unless the proxy saw `AssumeRole` hand the key out for a role of another
//! account (moto makes such credentials act as the role's account).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};

pub const DESCRIBE_PULL_THROUGH_CACHE_RULES: &str =
    "AmazonEC2ContainerRegistry_V20150921.DescribePullThroughCacheRules";
pub const DESCRIBE_REPOSITORY_CREATION_TEMPLATES: &str =
    "AmazonEC2ContainerRegistry_V20150921.DescribeRepositoryCreationTemplates";

/// The registry the templates call reads unless told otherwise: moto's account.
const OWN_ACCOUNT: &str = super::moto::ACCOUNT;

/// An answer: HTTP status, JSON body, and the error type for an error.
pub type Answer = (u16, String, Option<&'static str>);

/// The rules and templates the proxy answers with.
#[derive(Debug)]
pub struct PullThrough {
    /// Rules by registry id.
    rules: BTreeMap<String, Vec<Value>>,
    /// Templates by the registry (account) they belong to.
    templates: BTreeMap<String, Vec<Value>>,
    /// The account of credentials that no `AssumeRole` handed out.
    own_account: String,
    /// Access key ids handed out by `AssumeRole`, with the role's account.
    assumed_keys: HashMap<String, String>,
    /// Most items a page holds whatever `maxResults` asks (as ECR may).
    page_limit: Option<usize>,
    issued_tokens: HashSet<String>,
    shape_errors: Vec<String>,
}

impl Default for PullThrough {
    fn default() -> Self {
        Self {
            rules: BTreeMap::new(),
            templates: BTreeMap::new(),
            own_account: OWN_ACCOUNT.to_owned(),
            assumed_keys: HashMap::new(),
            page_limit: None,
            issued_tokens: HashSet::new(),
            shape_errors: Vec::new(),
        }
    }
}

impl PullThrough {
    /// A rule of `account`'s registry: repositories `prefix/…` come from `upstream`.
    pub fn add_rule(&mut self, account: &str, prefix: &str, upstream: &str) {
        self.rules
            .entry(account.to_owned())
            .or_default()
            .push(json!({
                "ecrRepositoryPrefix": prefix,
                "upstreamRegistryUrl": upstream,
                "upstreamRegistry": "docker-hub",
                "registryId": account,
                "createdAt": 1.7e9,
                "updatedAt": 1.7e9,
            }));
    }

    /// A template of moto's account's registry. `kms_key` only with a KMS type.
    pub fn add_template(
        &mut self,
        prefix: &str,
        applied_for: &[&str],
        encryption_type: &str,
        kms_key: Option<&str>,
    ) {
        let own = self.own_account.clone();
        self.add_template_in(&own, prefix, applied_for, encryption_type, kms_key);
    }

    /// A template of `account`'s registry, read only with credentials of
    /// `account` (a role assumed there).
    pub fn add_template_in(
        &mut self,
        account: &str,
        prefix: &str,
        applied_for: &[&str],
        encryption_type: &str,
        kms_key: Option<&str>,
    ) {
        let mut encryption = json!({ "encryptionType": encryption_type });
        if let Some(key) = kms_key {
            encryption["kmsKey"] = json!(key);
        }
        self.templates
            .entry(account.to_owned())
            .or_default()
            .push(json!({
                "prefix": prefix,
                "description": format!("template {prefix}"),
                "encryptionConfiguration": encryption,
                "resourceTags": [],
                "imageTagMutability": "MUTABLE",
                "appliedFor": applied_for,
                "createdAt": 1.7e9,
                "updatedAt": 1.7e9,
            }));
    }

    /// Credentials with `access_key_id` act as `account` (an `AssumeRole` answer).
    pub fn credentials_of(&mut self, access_key_id: &str, account: &str) {
        self.assumed_keys
            .insert(access_key_id.to_owned(), account.to_owned());
    }

    /// Removes every template (to change one, remove all and add them again).
    pub fn clear_templates(&mut self) {
        self.templates.clear();
    }

    pub fn set_page_limit(&mut self, limit: usize) {
        self.page_limit = Some(limit);
    }

    pub fn shape_errors(&self) -> Vec<String> {
        self.shape_errors.clone()
    }

    /// The answer to `target` with `body`, signed with `access_key_id`, or
    /// `None` for another operation.
    pub fn answer(
        &mut self,
        target: &str,
        content_type: &str,
        access_key_id: &str,
        body: &[u8],
    ) -> Option<Answer> {
        let (fields, items_key) = match target {
            DESCRIBE_PULL_THROUGH_CACHE_RULES => (
                &[
                    "registryId",
                    "ecrRepositoryPrefixes",
                    "nextToken",
                    "maxResults",
                ][..],
                "pullThroughCacheRules",
            ),
            DESCRIBE_REPOSITORY_CREATION_TEMPLATES => (
                &["prefixes", "nextToken", "maxResults"][..],
                "repositoryCreationTemplates",
            ),
            _ => return None,
        };
        let request = match self.check(target, content_type, body, fields) {
            Ok(request) => request,
            Err(problem) => {
                self.shape_errors.push(format!("{target}: {problem}"));
                let body = json!({"__type": "InvalidParameterException", "message": problem});
                return Some((400, body.to_string(), Some("InvalidParameterException")));
            }
        };
        let (items, registry_id) = if target == DESCRIBE_PULL_THROUGH_CACHE_RULES {
            let account = request["registryId"].as_str().unwrap_or_default();
            (self.rules.get(account).cloned().unwrap_or_default(), None)
        } else {
            let caller = self
                .assumed_keys
                .get(access_key_id)
                .unwrap_or(&self.own_account)
                .clone();
            let templates = self.templates.get(&caller).cloned().unwrap_or_default();
            (templates, Some(caller))
        };
        Some((
            200,
            self.page(&request, items_key, items, registry_id),
            None,
        ))
    }

    fn check(
        &self,
        target: &str,
        content_type: &str,
        body: &[u8],
        fields: &[&str],
    ) -> Result<Value, String> {
        if content_type != "application/x-amz-json-1.1" {
            return Err(format!("content-type {content_type:?}"));
        }
        let request: Value = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
        let object = request.as_object().ok_or("the body is not an object")?;
        if let Some(field) = object.keys().find(|k| !fields.contains(&k.as_str())) {
            return Err(format!("unknown field {field:?}"));
        }
        if target == DESCRIBE_PULL_THROUGH_CACHE_RULES {
            let id = object.get("registryId").and_then(Value::as_str);
            if !id.is_some_and(|id| id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())) {
                return Err(format!("registryId {id:?}"));
            }
        }
        if let Some(max) = object.get("maxResults")
            && !max.as_u64().is_some_and(|m| (1..=1000).contains(&m))
        {
            return Err(format!("maxResults {max}"));
        }
        if let Some(token) = object.get("nextToken")
            && !token
                .as_str()
                .is_some_and(|t| self.issued_tokens.contains(t))
        {
            return Err(format!("nextToken {token} was never issued"));
        }
        Ok(request)
    }

    /// The page `request` asks for.
    fn page(
        &mut self,
        request: &Value,
        items_key: &str,
        items: Vec<Value>,
        registry_id: Option<String>,
    ) -> String {
        let start: usize = request["nextToken"]
            .as_str()
            .and_then(|t| t.rsplit('-').next()?.parse().ok())
            .unwrap_or(0);
        let mut size = request["maxResults"].as_u64().unwrap_or(100) as usize;
        if let Some(limit) = self.page_limit {
            size = size.min(limit);
        }
        let end = (start + size).min(items.len());
        let mut answer = json!({ items_key: items[start.min(end)..end] });
        if let Some(id) = registry_id {
            answer["registryId"] = json!(id);
        }
        if end < items.len() {
            let token = format!("{items_key}-{}-{end}", self.issued_tokens.len());
            self.issued_tokens.insert(token.clone());
            answer["nextToken"] = json!(token);
        }
        answer.to_string()
    }
}
