//! Every raw crossing the preset bans, once each.

use std::time::Duration;

pub async fn offloads_by_hand() -> u32 {
    tokio::task::spawn_blocking(|| 1).await.unwrap_or(0)
}

pub fn blocks_in_place() -> u32 {
    tokio::task::block_in_place(|| 2)
}

pub fn blocks_on_a_handle(handle: &tokio::runtime::Handle) -> u32 {
    handle.block_on(async { 3 })
}

pub fn blocks_on_a_runtime(rt: &tokio::runtime::Runtime) -> u32 {
    rt.block_on(async { 4 })
}

pub fn blocks_on_futures_executor() -> u32 {
    futures::executor::block_on(async { 5 })
}

pub async fn sleeps_in_async_code() {
    std::thread::sleep(Duration::from_millis(1));
}
