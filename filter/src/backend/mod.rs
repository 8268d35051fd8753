//! The 3scale Service Management API: requests Tollgate sends and answers it reads.
