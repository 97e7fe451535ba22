// A webhook in front of the API server must answer, not abort: no unwrap,
// expect or panic in the product (tests may: a failed assertion is their job).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use clap::Parser;
use ecr_guard::cli::{Cli, Command};
use ecr_guard::run;

fn main() -> std::process::ExitCode {
    // One process-wide crypto provider (ring) for rustls: the webhook's TLS, the
    // kube client and the AWS SDK client all use it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    run::init_tracing(&cli.log, cli.command.default_log_level());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ecr-guard: failed to start the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => match run::serve(*args).await {
                Ok(()) => 0,
                Err(e) => {
                    run::report_fatal(&e);
                    1
                }
            },
            Command::Check(args) => run::check(*args).await,
            Command::Audit(args) => run::audit(*args).await,
            Command::Scan(args) => run::scan(*args).await,
            Command::Crd(args) => run::exit_code(run::crd(&args).map(|()| 0)),
        }
    });
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(2))
}
