//! With a prebuilt RocksDB (`ROCKSDB_LIB_DIR`, see run.sh), librocksdb-sys links only
//! `librocksdb.a` and not the C++ runtime it needs; link that here.
fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_LIB_DIR");
    if std::env::var_os("ROCKSDB_LIB_DIR").is_some() {
        println!("cargo:rustc-link-lib=dylib=stdc++");
    }
}
