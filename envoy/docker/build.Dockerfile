# The toolchain image of docker-compose's `build` service: Rust with the wasm32-wasip1 target. The build itself
# runs as your user (compose's `user:`), so the files it writes into ./target are yours; /cargo-home is left
# writable by anyone, so the cargo-cache volume mounted there (which starts as a copy of it) is too.
FROM rust:1.95
RUN rustup target add wasm32-wasip1 && mkdir -m 1777 /cargo-home
