//! The `rampart` command line: `serve` (the default), `migrate`,
//! `user create`, `config check` and `keys generate`.
//!
//! Each command loads configuration the same way (`config::load`) and
//! reports failures as one readable message on stderr with exit code 1,
//! never a panic trace.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

use crate::{
    accounts::{AccountError, AccountRequest, create_account},
    app::{self, AppState},
    auth::{keys, password::PasswordHasher},
    bootstrap,
    clock::SystemClock,
    config::{self, Config, ConfigSources, JwtAlgorithm},
    domain::Role,
    policy::Authorizer,
    proxy::Gateway,
    server::{self, Server},
    store, telemetry, tls,
};

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    about = "Rampart: a secure-by-default API server",
    long_about = "Rampart: a secure-by-default API server.\n\n\
        With no command it serves (same as `rampart serve`). Configuration comes from built-in \
        defaults, then the TOML file (--config, RAMPART_CONFIG or ./rampart.toml), then .env, \
        then RAMPART_<SECTION>__<KEY> variables.",
    after_help = "First steps:\n  rampart serve                        start on 127.0.0.1:3000 with SQLite under data/\n  \
        rampart user create --email you@example.com --name You --role admin\n  \
        rampart serve --upstream http://127.0.0.1:8080   put Rampart in front of an existing API\n  \
        rampart config check --config rampart.toml"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Start the API server (the default command).
    Serve(ServeArgs),
    /// Apply pending database migrations, then exit.
    Migrate(ConfigArg),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Args, Default)]
struct ConfigArg {
    /// TOML configuration file (default: RAMPART_CONFIG, else ./rampart.toml if present).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args, Default)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Serve HTTPS with a freshly generated self-signed certificate (development only).
    #[arg(long)]
    dev_tls: bool,
    /// Protect the API at URL (e.g. http://127.0.0.1:8080): every path Rampart does not
    /// serve itself is proxied there for signed-in callers (sets proxy.default_upstream).
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. The password comes from RAMPART_PASSWORD, or a prompt.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// admin, manager or user.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        department: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration (and the files it names); exit 1 on any problem.
    Check(ConfigArg),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new access-token signing key to stdout (PKCS#8 PEM, or a secret for HS256).
    Generate {
        /// EdDSA, ES256 or HS256.
        #[arg(long, default_value = "EdDSA", value_parser = parse_algorithm)]
        alg: JwtAlgorithm,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse().map_err(|message: &str| message.to_owned())
}

fn parse_algorithm(text: &str) -> Result<JwtAlgorithm, String> {
    match text {
        "EdDSA" => Ok(JwtAlgorithm::EdDSA),
        "ES256" => Ok(JwtAlgorithm::ES256),
        "RS256" => Ok(JwtAlgorithm::RS256),
        "HS256" => Ok(JwtAlgorithm::HS256),
        _ => Err("must be one of EdDSA, ES256, RS256, HS256".into()),
    }
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Migrate(args)) => migrate(args),
        Some(Command::User(UserCommand::Create { email, name, role, department, config })) => {
            create_user(config, &email, &name, role, department)
        }
        Some(Command::Config(ConfigCommand::Check(args))) => check_config(args),
        Some(Command::Keys(KeysCommand::Generate { alg })) => keys::generate(alg).map(|key| print!("{key}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rampart: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(arg: &ConfigArg) -> anyhow::Result<(Config, ConfigSources)> {
    load_config_with(arg, Vec::new())
}

/// Loads with `overrides` (variable name, value) above every other source,
/// so command-line options are checked like any configuration value.
fn load_config_with(arg: &ConfigArg, overrides: Vec<(String, String)>) -> anyhow::Result<(Config, ConfigSources)> {
    let mut sources = ConfigSources::from_process(arg.config.clone()).map_err(config_error)?;
    sources.env.extend(overrides);
    let config = config::load(&sources).map_err(config_error)?;
    Ok((config, sources))
}

fn config_error(error: config::ConfigError) -> anyhow::Error {
    let lines: Vec<String> = error.problems.iter().map(|p| format!("  {p}")).collect();
    anyhow::anyhow!("configuration error:\n{}", lines.join("\n"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides =
        args.upstream.iter().map(|url| ("RAMPART_PROXY__DEFAULT_UPSTREAM".to_owned(), url.clone())).collect();
    // The overrides stay in `sources`, so a SIGHUP reload keeps `--upstream`.
    let (config, sources) = load_config_with(&args.config, overrides)?;
    let _log_writer = telemetry::init(&config)?;
    if args.dev_tls && config.is_production() {
        anyhow::bail!("--dev-tls is for development; production needs [tls] cert_file/key_file");
    }
    runtime()?.block_on(serve_async(Arc::new(config), args.dev_tls, sources))
}

async fn serve_async(config: Arc<Config>, dev_tls: bool, sources: ConfigSources) -> anyhow::Result<()> {
    let store = store::open(&config.database).await?;
    if config.database.auto_migrate {
        store.migrate().await?;
    }
    let tls = if dev_tls {
        let (acceptor, cert) = tls::acceptor_self_signed(&config.server.data_dir)?;
        tracing::warn!(certificate = %cert.display(), "serving HTTPS with a self-signed development certificate");
        Some(acceptor)
    } else if config.tls.is_configured() {
        Some(tls::acceptor_from_files(&config.tls.cert_file, &config.tls.key_file)?)
    } else {
        None
    };
    let state = AppState::build(config.clone(), store, Arc::new(SystemClock), tls.is_some()).await?;
    if let Some(admin) = bootstrap::ensure_admin(&*state.store, &state.hasher, &config.bootstrap).await? {
        tracing::info!(user_id = %admin.id, email = %admin.email, "created the bootstrap admin");
    }

    let server = Server::bind(&config).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        "rampart {} listening on {scheme}://{} (metrics on http://{}/metrics)",
        env!("CARGO_PKG_VERSION"),
        server.public_addr(),
        server.admin_addr()
    );
    if state.store.count_admins().await? == 0 {
        tracing::info!(
            "no admin exists yet: create one with `rampart user create --email you@example.com --name You --role admin` \
             or set [bootstrap] admin_email and admin_password"
        );
    }
    spawn_reloader(state.authorizer.clone(), state.gateway.clone(), sources);
    let gateway = state.gateway.clone();
    let api_keys = state.api_keys.clone();
    let public = app::router(state.clone());
    let admin = app::admin_router(state);
    let shutdown = async move {
        server::shutdown_signal().await;
        // Websocket tunnels are not requests the drain waits for: tell them.
        gateway.shut_down();
    };
    let served = server.run(public, admin, tls, shutdown).await;
    // The API key uses noted since the last batch.
    if let Err(error) = api_keys.flush().await {
        tracing::warn!(cause = %error, "could not record the last API key uses");
    }
    served
}

/// SIGHUP re-reads `[policy] file` and the protect-mode route table (from
/// the same configuration sources as at start); whichever is invalid is
/// refused, and the one in force stays.
fn spawn_reloader(authorizer: Arc<Authorizer>, gateway: Arc<Gateway>, sources: ConfigSources) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; policy reload is off");
            return;
        };
        while hangups.recv().await.is_some() {
            match authorizer.reload() {
                Ok(()) => tracing::info!("policy reloaded"),
                Err(error) => {
                    tracing::error!(problems = %error, "policy reload refused; the previous policy stays in force")
                }
            }
            match config::load(&sources).map_err(|error| error.to_string()) {
                Ok(config) => match gateway.reload(&config) {
                    Ok(()) => tracing::info!("proxy routes reloaded"),
                    Err(problems) => tracing::error!(
                        problems = %problems.join("; "),
                        "proxy route reload refused; the previous routes stay in force"
                    ),
                },
                Err(problems) => tracing::error!(
                    problems = %problems,
                    "configuration reload refused; the previous routes stay in force"
                ),
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (authorizer, gateway, sources);
}

fn migrate(args: ConfigArg) -> anyhow::Result<()> {
    let (config, _) = load_config(&args)?;
    runtime()?.block_on(async {
        let store = store::open(&config.database).await?;
        store.migrate().await?;
        println!("migrations applied");
        Ok(())
    })
}

fn create_user(args: ConfigArg, email: &str, name: &str, role: Role, department: Option<String>) -> anyhow::Result<()> {
    let (config, sources) = load_config(&args)?;
    let password = match sources.variable("RAMPART_PASSWORD") {
        Some(password) => SecretString::from(password.to_owned()),
        None => prompt_password()?,
    };
    runtime()?.block_on(async {
        let store = store::open(&config.database).await?;
        if config.database.auto_migrate {
            store.migrate().await?;
        }
        let hasher = PasswordHasher::new(&config.auth.password_hash)?;
        // The operator vouches for the address they type.
        let request = AccountRequest { email, name, password, role, department, email_verified: true };
        match create_account(&*store, &hasher, request).await {
            Ok(user) => {
                println!("created {} {} ({})", user.role, user.email, user.id);
                Ok(())
            }
            Err(AccountError::Validation(errors)) => {
                let lines: Vec<String> = errors.iter().map(|e| format!("  --{}: {}", e.field, e.message)).collect();
                anyhow::bail!("cannot create the user:\n{}", lines.join("\n"))
            }
            Err(AccountError::EmailTaken) => anyhow::bail!("a user with this email already exists"),
            Err(other) => Err(anyhow::anyhow!("cannot create the user: {other}")),
        }
    })
}

fn prompt_password() -> anyhow::Result<SecretString> {
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("reading the password from stdin")?;
        return Ok(SecretString::from(line.trim_end_matches(['\r', '\n']).to_owned()));
    }
    let first = rpassword::prompt_password("Password (15 to 128 characters): ")?;
    let second = rpassword::prompt_password("Repeat the password: ")?;
    if first != second {
        anyhow::bail!("the passwords do not match");
    }
    Ok(SecretString::from(first))
}

fn check_config(args: ConfigArg) -> anyhow::Result<()> {
    let (config, sources) = load_config(&args)?;
    let mut problems = Vec::new();
    if config.tls.is_configured()
        && let Err(error) = tls::acceptor_from_files(&config.tls.cert_file, &config.tls.key_file)
    {
        problems.push(format!("{error:#}"));
    }
    if let Err(error) = Authorizer::load(&config.policy.file) {
        problems.extend(error.problems);
    }
    let key_file = &config.auth.signing_key_file;
    if !key_file.as_os_str().is_empty() && !key_file.is_file() {
        problems.push(format!("auth.signing_key_file: {} does not exist", key_file.display()));
    }
    if !problems.is_empty() {
        anyhow::bail!("configuration error:\n  {}", problems.join("\n  "));
    }
    let file = sources.file.map(|f| f.display().to_string()).unwrap_or_else(|| "built-in defaults".into());
    println!("configuration OK ({file}; environment {:?})", config.server.environment);
    Ok(())
}
