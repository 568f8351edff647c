//! What a vendor-app action runs with: the app API clients, the store (group registry), the
//! directory and `[outbound]` (media files).

use crate::actions::ActionError;
use crate::actions::api::{self, Apis};
use crate::actions::directory::Directory;
use crate::actions::outbound::Outbound;
use crate::store::Store;

pub struct App<'a> {
    pub apis: &'a Apis,
    pub store: &'a Store,
    pub directory: &'a Directory,
    pub media: &'a Outbound,
}

impl App<'_> {
    pub fn wecom(&self, via: &str) -> Result<&api::wecom::WeCom, ActionError> {
        self.apis
            .wecom
            .get(via)
            .map(|w| &**w)
            .ok_or_else(|| ActionError::permanent(format!("no wecom connection named {via:?}")))
    }

    pub fn dingtalk(&self, via: &str) -> Result<&api::dingtalk::DingTalk, ActionError> {
        self.apis
            .dingtalk
            .get(via)
            .map(|d| &**d)
            .ok_or_else(|| ActionError::permanent(format!("no dingtalk connection named {via:?}")))
    }
}
