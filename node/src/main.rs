fn main() -> anyhow::Result<()> {
    node::cli::main()
}
