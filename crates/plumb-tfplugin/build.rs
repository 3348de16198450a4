//! Compiles plumb's own description of the provider protocol into Rust.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() && which("protoc").is_none() {
        return Err(
            "protoc not found: install the Debian package protobuf-compiler \
                    (testenv/setup does this) or set PROTOC"
                .into(),
        );
    }
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(
            &["proto/tfplugin5.proto", "proto/tfplugin6.proto"],
            &["proto"],
        )?;
    Ok(())
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
