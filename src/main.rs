//! The resellerd command line: `serve`, `operator-token`.

use clap::{Parser, Subcommand};
use resellerd::auth::operator;
use resellerd::config::Settings;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Self-hosted reseller hosting: a reseller API, a Netlify-compatible deploy API and an edge
/// that serves every deployed site, in one binary with an embedded database.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (API, admin panel and edge) on the HTTP and HTTPS listeners
    Serve(Box<Settings>),
    /// Print a new operator token, replacing the old one (works while the server runs)
    OperatorToken {
        /// The server's data directory
        #[arg(long, env = "RESELLERD_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(settings) => serve(*settings),
        Command::OperatorToken { data_dir } => match operator::rotate(&data_dir) {
            Ok(secret) => {
                println!("{}", secret.expose());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!(
                "cannot write the operator token in {}: {e}",
                data_dir.display()
            )),
        },
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("resellerd: {msg}");
    ExitCode::FAILURE
}

fn serve(settings: Settings) -> ExitCode {
    let settings = match settings.resolve() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    resellerd::telemetry::init(settings.log_format.as_deref());
    let data_dir = settings.data_dir();
    if let Err(e) = std::fs::create_dir_all(&data_dir) {
        return fail(&format!(
            "cannot create data dir {}: {e}",
            data_dir.display()
        ));
    }
    let new_token = match operator::ensure(&data_dir) {
        Ok(t) => t,
        Err(e) => return fail(&format!("cannot write the operator token: {e}")),
    };
    let token_path = operator::token_path(&data_dir);
    let on_ready = move |http: std::net::SocketAddr, https: std::net::SocketAddr| {
        let mut out = std::io::stdout().lock();
        // One machine-readable line first: scripts and tests read the bound ports from it.
        let _ = writeln!(
            out,
            "resellerd listening http=http://{http} https=https://{https}"
        );
        let _ = writeln!(
            out,
            "  API:    http://{http}/api/v1   https://{https}/api/v1"
        );
        let _ = writeln!(out, "  Admin:  http://{http}/admin/");
        match &new_token {
            Some(t) if std::io::stdout().is_terminal() => {
                let _ = writeln!(
                    out,
                    "  Operator token (also in {}): {}",
                    token_path.display(),
                    t.expose()
                );
            }
            _ => {
                let _ = writeln!(out, "  Operator token: in {}", token_path.display());
            }
        }
        let _ = out.flush();
        tracing::info!(%http, %https, operator_token_file = %token_path.display(), "listening");
    };
    let result = actix_web::rt::System::new().block_on(resellerd::serve(settings, on_ready));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}
