//! [`Abi`] over Envoy's hostcalls, declared here to return their status instead of panicking on it.
//!
//! Envoy answers a status the SDK's wrappers do not expect in real conditions (reading a failed
//! callout's headers gives `BadArgument`), and a panic kills the VM. Data the host returns was
//! allocated through this module's `proxy_on_memory_allocate`, which hands out the buffer of a
//! `Vec<u8>` with capacity `size`: owning it as one is sound.

use std::ptr::null_mut;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status, StreamType};

use crate::hostcalls::Abi;
use crate::pairs;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_remove_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
    ) -> Status;
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> Status;
    fn proxy_set_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> Status;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> Status;
    fn proxy_continue_stream(stream_type: StreamType) -> Status;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> Status;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> Status;
    fn proxy_get_log_level(return_level: *mut LogLevel) -> Status;
    fn proxy_set_tick_period_milliseconds(period: u32) -> Status;
    fn proxy_define_metric(
        metric_type: MetricType,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> Status;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> Status;
    fn proxy_record_metric(metric_id: u32, value: u64) -> Status;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> Status;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> Status;
    fn proxy_register_shared_queue(
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> Status;
    fn proxy_enqueue_shared_queue(
        queue_id: u32,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_dequeue_shared_queue(
        queue_id: u32,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
}

fn result(status: Status) -> Result<(), Status> {
    match status {
        Status::Ok => Ok(()),
        other => Err(other),
    }
}

/// Takes ownership of bytes the host returned (see the module doc); None for a null pointer.
///
/// # Safety
/// `data` is null or was allocated by the host through `proxy_on_memory_allocate` with `size` bytes.
unsafe fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    // SAFETY: guaranteed by the caller.
    (!data.is_null()).then(|| unsafe { Vec::from_raw_parts(data, size, size) })
}

/// A call that returns bytes: Ok(None) for NotFound, the status for any other failure.
fn bytes_out(
    call: impl FnOnce(*mut *mut u8, *mut usize) -> Status,
) -> Result<Option<Vec<u8>>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    match call(&mut data, &mut size) {
        // SAFETY: on Ok the host set both out-parameters, or left the pointer null.
        Status::Ok => Ok(unsafe { owned(data, size) }),
        Status::NotFound => Ok(None),
        status => Err(status),
    }
}

/// The module's ABI: zero-sized, one per callback.
#[derive(Clone, Copy)]
pub struct Wasm;

impl Abi for Wasm {
    fn header(&self, map: MapType, name: &str) -> Result<Option<Vec<u8>>, Status> {
        // SAFETY: pointers and lengths come from live slices and locals; the host copies the data.
        bytes_out(|data, size| unsafe {
            proxy_get_header_map_value(map, name.as_ptr(), name.len(), data, size)
        })
    }

    fn headers(&self, map: MapType) -> Result<Vec<u8>, Status> {
        // SAFETY: as above.
        bytes_out(|data, size| unsafe { proxy_get_header_map_pairs(map, data, size) })
            .map(Option::unwrap_or_default)
    }

    fn set_header(&self, map: MapType, name: &str, value: Option<&[u8]>) -> Result<(), Status> {
        // SAFETY: as above.
        result(unsafe {
            match value {
                Some(value) => proxy_replace_header_map_value(
                    map,
                    name.as_ptr(),
                    name.len(),
                    value.as_ptr(),
                    value.len(),
                ),
                None => proxy_remove_header_map_value(map, name.as_ptr(), name.len()),
            }
        })
    }

    fn buffer(
        &self,
        kind: BufferType,
        start: usize,
        size: usize,
    ) -> Result<Option<Vec<u8>>, Status> {
        // SAFETY: as above.
        bytes_out(|data, out| unsafe { proxy_get_buffer_bytes(kind, start, size, data, out) })
    }

    fn set_buffer(&self, kind: BufferType, value: &[u8]) -> Result<(), Status> {
        // SAFETY: as above. `size` usize::MAX means "to the end": the whole buffer is replaced.
        result(unsafe { proxy_set_buffer_bytes(kind, 0, usize::MAX, value.as_ptr(), value.len()) })
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        let path = path.join("\0");
        // SAFETY: as above.
        bytes_out(|data, size| unsafe { proxy_get_property(path.as_ptr(), path.len(), data, size) })
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), Status> {
        let path = path.join("\0");
        // SAFETY: as above.
        result(unsafe {
            proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len())
        })
    }

    /// Through the SDK, which must record the token to route the answer back (see `hostcalls`).
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, Status> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, Vec::new(), timeout)
    }

    fn send_local_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
        grpc_status: i32,
    ) -> Result<(), Status> {
        let headers = pairs::encode(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        // SAFETY: as above.
        result(unsafe {
            proxy_send_local_response(
                status,
                std::ptr::null(),
                0,
                body.as_ptr(),
                body.len(),
                headers.as_ptr(),
                headers.len(),
                grpc_status,
            )
        })
    }

    fn resume_request(&self) -> Result<(), Status> {
        // SAFETY: no pointers.
        result(unsafe { proxy_continue_stream(StreamType::HttpRequest) })
    }

    fn call_foreign_function(&self, name: &str) -> Result<(), Status> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: as above; no arguments.
        let status = unsafe {
            proxy_call_foreign_function(
                name.as_ptr(),
                name.len(),
                std::ptr::null(),
                0,
                &mut data,
                &mut size,
            )
        };
        // SAFETY: results, if any, were allocated by the host (dropped here).
        drop(unsafe { owned(data, size) });
        result(status)
    }

    fn current_time(&self) -> Result<SystemTime, Status> {
        let mut nanos: u64 = 0;
        // SAFETY: the out-parameter is a live local.
        result(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) })?;
        Ok(UNIX_EPOCH + Duration::from_nanos(nanos))
    }

    fn log_level(&self) -> Result<LogLevel, Status> {
        let mut level = LogLevel::Info;
        // SAFETY: as above.
        result(unsafe { proxy_get_log_level(&mut level) })?;
        Ok(level)
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), Status> {
        let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
        // SAFETY: no pointers.
        result(unsafe { proxy_set_tick_period_milliseconds(ms) })
    }

    fn define_metric(&self, kind: MetricType, name: &str) -> Result<u32, Status> {
        let mut id: u32 = 0;
        // SAFETY: as above.
        result(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) })?;
        Ok(id)
    }

    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status> {
        // SAFETY: no pointers.
        result(unsafe { proxy_increment_metric(id, offset) })
    }

    fn record_metric(&self, id: u32, value: u64) -> Result<(), Status> {
        // SAFETY: no pointers.
        result(unsafe { proxy_record_metric(id, value) })
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: as above.
        let status = unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        };
        match status {
            // SAFETY: as in `bytes_out`.
            Status::Ok => Ok((unsafe { owned(data, size) }, (cas > 0).then_some(cas))),
            Status::NotFound => Ok((None, None)),
            status => Err(status),
        }
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        // SAFETY: as above.
        result(unsafe {
            proxy_set_shared_data(
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                cas.unwrap_or(0),
            )
        })
    }

    fn register_shared_queue(&self, name: &str) -> Result<u32, Status> {
        let mut id: u32 = 0;
        // SAFETY: as above.
        result(unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) })?;
        Ok(id)
    }

    fn enqueue_shared_queue(&self, queue: u32, value: &[u8]) -> Result<(), Status> {
        // SAFETY: as above.
        result(unsafe { proxy_enqueue_shared_queue(queue, value.as_ptr(), value.len()) })
    }

    fn dequeue_shared_queue(&self, queue: u32) -> Result<Option<Vec<u8>>, Status> {
        // SAFETY: as above.
        bytes_out(|data, size| unsafe { proxy_dequeue_shared_queue(queue, data, size) })
    }
}
