//! The few hostcalls whose SDK wrappers panic on an unexpected status, re-declared to return it.
//!
//! A panic kills the VM and, until Envoy reloads it, every request on that worker. These calls can
//! fail for reasons outside our control (e.g. a header map no longer available), so their failure is
//! reported as a value and logged instead.

use proxy_wasm::types::{BufferType, MapType, Status, StreamType};

use crate::pairs;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
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
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_set_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
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
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

fn result(status: Status) -> Result<(), Status> {
    match status {
        Status::Ok => Ok(()),
        other => Err(other),
    }
}

pub fn set_header(map: MapType, name: &str, value: Option<&[u8]>) -> Result<(), Status> {
    // SAFETY: pointers and lengths come from live slices; the host copies the data.
    let status = unsafe {
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
    };
    result(status)
}

/// Every entry of a header map, in proxy-wasm's map encoding ([`pairs`]).
pub fn header_map(map: MapType) -> Result<Vec<u8>, Status> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: both out-pointers are live locals.
    result(unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) })?;
    if data.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: the host allocated `size` bytes through this module's `proxy_on_memory_allocate`,
    // which hands out the buffer of a `Vec<u8>` with capacity `size`: owning it as one is sound.
    Ok(unsafe { Vec::from_raw_parts(data, size, size) })
}

pub fn set_property(path: &[&str], value: &[u8]) -> Result<(), Status> {
    let path = path.join("\0");
    // SAFETY: as above.
    result(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

/// Replaces the whole buffered request body.
pub fn set_request_body(body: &[u8]) -> Result<(), Status> {
    // SAFETY: as above. `size` usize::MAX means "to the end": the whole body is replaced.
    result(unsafe {
        proxy_set_buffer_bytes(
            BufferType::HttpRequestBody,
            0,
            usize::MAX,
            body.as_ptr(),
            body.len(),
        )
    })
}

/// `grpc_status` -1 means a plain HTTP reply.
pub fn send_local_response(
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

pub fn resume_request() -> Result<(), Status> {
    // SAFETY: no pointers.
    result(unsafe { proxy_continue_stream(StreamType::HttpRequest) })
}
