//! One use of an image under review: where in the pod spec, under which name,
//! and the reference parsed once.

use std::sync::Arc;

use crate::image::{EcrRepository, ImageError, ImageRef};

/// Where in a pod spec an image is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    Container,
    InitContainer,
    EphemeralContainer,
    /// `volumes[].image.reference`.
    ImageVolume,
}

impl Slot {
    fn noun(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::InitContainer => "init container",
            Self::EphemeralContainer => "ephemeral container",
            Self::ImageVolume => "image volume",
        }
    }
}

/// One image use under review: a container (or image volume) and its image.
#[derive(Clone, Debug)]
pub struct ImageUse {
    pub slot: Slot,
    /// The container's (or volume's) name.
    pub name: String,
    /// The image reference exactly as written.
    pub reference: String,
    /// Shared with every image use naming the same reference (see
    /// [`parse_cached`](crate::image::parse_cached)).
    pub image: Arc<Result<ImageRef, ImageError>>,
}

impl ImageUse {
    pub fn new(slot: Slot, name: impl Into<String>, reference: impl Into<String>) -> Self {
        let reference = reference.into();
        let image = crate::image::parse_cached(&reference);
        Self {
            slot,
            name: name.into(),
            reference,
            image,
        }
    }

    /// The ECR repository the image comes from, if it parsed and is one.
    pub fn ecr_repository(&self) -> Option<&EcrRepository> {
        (*self.image).as_ref().ok()?.ecr_repository()
    }

    /// `container "api" image 1234….amazonaws.com/payments/api:1.4`; a
    /// reference longer than any valid one is cut, so that a hostile or broken
    /// spec cannot make the denial message (shown to the user) megabytes long.
    pub(super) fn describe(&self) -> String {
        format!(
            "{} {:?} image {}",
            self.slot.noun(),
            crate::ellipsize(&self.name, MAX_SHOWN_CHARS),
            crate::ellipsize(&self.reference, MAX_SHOWN_CHARS)
        )
    }

    /// `container "api"`: for warnings, which leave the image out.
    pub(super) fn short(&self) -> String {
        format!("{} {:?}", self.slot.noun(), self.name)
    }
}

/// The longest container name or image reference a message repeats: more than
/// any valid reference (name ≤ 255, tag ≤ 128, digest ~100 characters).
const MAX_SHOWN_CHARS: usize = 512;
