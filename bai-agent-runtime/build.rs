//! Compiles `proto/agent.proto` with protox (no system `protoc` needed) into the tonic client
//! and server the manager and the agent share.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/agent.proto");
    let fds = protox::compile(["agent.proto"], ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).btree_map(".").compile_fds(fds)?;
    Ok(())
}
