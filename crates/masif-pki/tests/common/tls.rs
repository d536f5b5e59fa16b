//! One real mutual-TLS connection over loopback between a master's and an agent's config.

use std::sync::Arc;

use masif_pki::{client_config, server_config, TlsFiles};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What each side saw of one connection attempt: the server the client's CN (empty without
/// one), the client the server's reply `hello CN`.
pub struct Outcome {
    pub server: Result<String, String>,
    pub client: Result<String, String>,
}

/// Serves one connection with `server` and connects with `client`, expecting `name`.
pub async fn connect(
    server: rustls::ServerConfig,
    client: rustls::ClientConfig,
    name: &str,
) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer = tls.get_ref().1.peer_certificates().map(|c| c[0].clone());
        let cn = masif_pki::common_name(&peer.expect("a client certificate"))
            .unwrap()
            .unwrap_or_default();
        tls.write_all(format!("hello {cn}").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<String, String>(cn)
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let client = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut reply = String::new();
        tls.read_to_string(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<String, String>(reply)
    }
    .await;
    let server = server_task.await.unwrap();
    Outcome { server, client }
}

/// Connects an agent with `agent`'s files to a master with `master`'s, expecting the master
/// to be `name`: Ok(the CN the master saw, as the agent heard it back) or both sides' errors.
pub async fn handshake(master: &TlsFiles, agent: &TlsFiles, name: &str) -> Result<String, String> {
    let server = server_config(master).unwrap();
    let client = client_config(agent).unwrap();
    match connect(server, client, name).await {
        Outcome {
            server: Ok(cn),
            client: Ok(reply),
        } if reply == format!("hello {cn}") => Ok(cn),
        Outcome { server, client } => Err(format!("server: {server:?}, client: {client:?}")),
    }
}
