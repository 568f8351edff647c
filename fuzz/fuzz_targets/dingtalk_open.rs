//! Fuzzes the dingtalk receiver's open path with arbitrary requests.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::LazyLock;

use hookgate::config::Receiver;
use libfuzzer_sys::fuzz_target;

static RECEIVER: LazyLock<Receiver> = LazyLock::new(|| common::receiver("ding"));

fuzz_target!(|data: &[u8]| common::run(&RECEIVER, data));
