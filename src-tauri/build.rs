fn main() {
    // `sqlx::migrate!` embeds the files at compile time but does not notice new ones by itself.
    println!("cargo:rerun-if-changed=migrations");
}
