//! The raw hostcalls the filter uses, one method each, every failure a value.

use std::time::{Duration, SystemTime};

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};

/// Envoy's side of the ABI. Implemented over `extern` functions in the wasm build, and by test hosts.
pub trait Abi {
    /// One header's value; None when the map has no such header.
    fn header(&self, map: MapType, name: &str) -> Result<Option<Vec<u8>>, Status>;
    /// A whole header map in proxy-wasm's map encoding ([`crate::pairs`]).
    fn headers(&self, map: MapType) -> Result<Vec<u8>, Status>;
    /// Replaces (Some) or removes (None) a header.
    fn set_header(&self, map: MapType, name: &str, value: Option<&[u8]>) -> Result<(), Status>;
    fn buffer(
        &self,
        kind: BufferType,
        start: usize,
        size: usize,
    ) -> Result<Option<Vec<u8>>, Status>;
    /// Replaces the whole buffer.
    fn set_buffer(&self, kind: BufferType, value: &[u8]) -> Result<(), Status>;
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status>;
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), Status>;
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, Status>;
    /// `grpc_status` -1 means a plain HTTP reply.
    fn send_local_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
        grpc_status: i32,
    ) -> Result<(), Status>;
    fn resume_request(&self) -> Result<(), Status>;
    fn call_foreign_function(&self, name: &str) -> Result<(), Status>;
    fn current_time(&self) -> Result<SystemTime, Status>;
    fn log_level(&self) -> Result<LogLevel, Status>;
    fn set_tick_period(&self, period: Duration) -> Result<(), Status>;
    fn define_metric(&self, kind: MetricType, name: &str) -> Result<u32, Status>;
    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status>;
    fn record_metric(&self, id: u32, value: u64) -> Result<(), Status>;
    /// A shared-data value and its CAS number (None, None when the key was never written).
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status>;
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status>;
    fn register_shared_queue(&self, name: &str) -> Result<u32, Status>;
    fn enqueue_shared_queue(&self, queue: u32, value: &[u8]) -> Result<(), Status>;
    /// None when the queue is empty.
    fn dequeue_shared_queue(&self, queue: u32) -> Result<Option<Vec<u8>>, Status>;
}
