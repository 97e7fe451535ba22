//! Selection, before any fact is fetched: which policies apply in a namespace,
//! and which repositories they need facts about.

use std::collections::{BTreeMap, BTreeSet};

use super::compile::Policy;
use super::image_use::ImageUse;
use crate::image::EcrRepository;

/// The policies that apply in a namespace with these labels.
pub fn applicable<'p>(
    policies: &'p [Policy],
    namespace_labels: &BTreeMap<String, String>,
) -> Vec<&'p Policy> {
    policies
        .iter()
        .filter(|p| p.applies_to_namespace(namespace_labels))
        .collect()
}

/// The ECR repositories whose facts some applicable policy needs.
pub fn repositories_to_look_up(
    policies: &[&Policy],
    image_uses: &[ImageUse],
) -> BTreeSet<EcrRepository> {
    image_uses
        .iter()
        .filter_map(|s| (*s.image).as_ref().ok())
        .filter_map(|image| {
            let repo = image.ecr_repository()?;
            policies
                .iter()
                .any(|p| p.is_valid() && p.selects_image(&image.name))
                .then(|| repo.clone())
        })
        .collect()
}
