// Migrations are embedded at build time; rebuild when they change.
fn main() {
    println!("cargo:rerun-if-changed=sql/migrations");
}
