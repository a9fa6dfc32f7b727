//! The gRPC service the manager calls: [`AgentService`] maps each method of
//! `bai.agent.v1.Agent` onto [`Agent`], counts it in the metrics
//! (`backendai_rpc_requests`, `backendai_rpc_failure_requests`,
//! `backendai_rpc_request_duration_seconds`, labelled with the original method names), and
//! turns errors into statuses (`INVALID_ARGUMENT` naming the field, `NOT_FOUND`,
//! `RESOURCE_EXHAUSTED`, …). The shared-token check sits in front of it ([`serve`]).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bai_agent_runtime::rpc::pb::agent_server::{Agent as AgentRpc, AgentServer};
use bai_agent_runtime::rpc::{pb, TokenCheck, MAX_MESSAGE};
use bai_core::{KernelId, SessionId};
use futures::Stream;
use tonic::codegen::http;
use tonic::{Request, Response, Status};

use crate::agent::{parse_id, Agent};
use crate::error::{AgentError, Result};

/// The service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AgentService {
    agent: Arc<Agent>,
    accepting: Arc<AtomicBool>,
}

impl AgentService {
    /// A service over `agent`.
    pub fn new(agent: Arc<Agent>) -> Self {
        Self { agent, accepting: Arc::new(AtomicBool::new(true)) }
    }

    /// Refuses every call from now on (`UNAVAILABLE`), as the agent shuts down.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    async fn call<T, F>(&self, method: &'static str, work: F) -> Result<Response<T>, Status>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(Status::unavailable("the agent is shutting down"));
        }
        let started = Instant::now();
        let result = work.await;
        let failure = result.as_ref().err().map(AgentError::class);
        self.agent.metrics().observe_rpc(method, started.elapsed(), failure);
        match result {
            Ok(v) => Ok(Response::new(v)),
            Err(e) => {
                tracing::Span::current().record("otel.status_code", "ERROR");
                tracing::info!(method, error = %e, "RPC failed");
                Err(e.into())
            }
        }
    }
}

type ExecuteStream = Pin<Box<dyn Stream<Item = Result<pb::ExecuteEvent, Status>> + Send>>;

#[tonic::async_trait]
impl AgentRpc for AgentService {
    async fn ping(&self, request: Request<pb::PingRequest>) -> Result<Response<pb::PingReply>, Status> {
        let msg = request.into_inner().msg;
        self.call("ping", async { Ok(pb::PingReply { msg }) }).await
    }

    async fn get_status(&self, _: Request<pb::GetStatusRequest>) -> Result<Response<pb::AgentStatus>, Status> {
        self.call("get_status", async { Ok(self.agent.status()) }).await
    }

    async fn gather_hwinfo(&self, _: Request<pb::GatherHwinfoRequest>) -> Result<Response<pb::JsonReply>, Status> {
        self.call("gather_hwinfo", async { Ok(pb::JsonReply { json: self.agent.hwinfo().to_string() }) }).await
    }

    async fn create_kernels(
        &self,
        request: Request<pb::CreateKernelsRequest>,
    ) -> Result<Response<pb::CreateKernelsReply>, Status> {
        let request = request.into_inner();
        tracing::Span::current().record("session_id", request.session_id.as_str());
        self.call("create_kernels", async {
            let kernels = self.agent.create_kernels(&request).await?;
            Ok(pb::CreateKernelsReply { kernels })
        })
        .await
    }

    async fn destroy_kernel(
        &self,
        request: Request<pb::DestroyKernelRequest>,
    ) -> Result<Response<pb::DestroyKernelReply>, Status> {
        let r = request.into_inner();
        let span = tracing::Span::current();
        span.record("kernel_id", r.kernel_id.as_str());
        if !r.session_id.is_empty() {
            span.record("session_id", r.session_id.as_str());
        }
        self.call("destroy_kernel", async {
            let kernel_id: KernelId = parse_id("kernel_id", &r.kernel_id)?;
            let session_id: Option<SessionId> =
                if r.session_id.is_empty() { None } else { Some(parse_id("session_id", &r.session_id)?) };
            let (exit_code, reason) =
                self.agent.destroy_kernel(kernel_id, session_id, &r.reason, r.suppress_events).await?;
            Ok(pb::DestroyKernelReply { exit_code, reason })
        })
        .await
    }

    async fn restart_kernel(
        &self,
        request: Request<pb::RestartKernelRequest>,
    ) -> Result<Response<pb::KernelCreated>, Status> {
        let r = request.into_inner();
        self.call("restart_kernel", async {
            let kernel_id: KernelId = parse_id("kernel_id", &r.kernel_id)?;
            self.agent.restart_kernel(kernel_id).await
        })
        .await
    }

    type ExecuteStream = ExecuteStream;

    async fn execute(&self, request: Request<pb::ExecuteRequest>) -> Result<Response<Self::ExecuteStream>, Status> {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(Status::unavailable("the agent is shutting down"));
        }
        let request = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::ExecuteEvent, Status>>(256);
        let agent = self.agent.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let sink_tx = tx.clone();
            let sink = move |record: pb::ConsoleRecord| {
                // Back-pressure without blocking the runner: a full channel drops the caller.
                sink_tx.try_send(Ok(pb::ExecuteEvent { event: Some(pb::execute_event::Event::Record(record)) })).is_ok()
            };
            let result = agent.execute(&request, &sink).await;
            agent.metrics().observe_rpc("execute", started.elapsed(), result.as_ref().err().map(AgentError::class));
            let last = match result {
                Ok(r) => Ok(pb::ExecuteEvent { event: Some(pb::execute_event::Event::Result(r)) }),
                Err(e) => Err(Status::from(e)),
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(tokio_stream(rx))))
    }

    async fn interrupt_kernel(&self, request: Request<pb::KernelRequest>) -> Result<Response<pb::Empty>, Status> {
        let r = request.into_inner();
        self.call("interrupt_kernel", async {
            self.agent.interrupt(&r.kernel_id).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    async fn upload_file(&self, request: Request<pb::UploadFileRequest>) -> Result<Response<pb::Empty>, Status> {
        let r = request.into_inner();
        self.call("upload_file", async {
            self.agent.upload_file(&r).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    async fn download_file(
        &self,
        request: Request<pb::DownloadFileRequest>,
    ) -> Result<Response<pb::DownloadFileReply>, Status> {
        let r = request.into_inner();
        self.call("download_file", async {
            let tar = self.agent.download_file(&r).await?;
            if tar.len() > MAX_MESSAGE - 1024 {
                return Err(AgentError::invalid(
                    "path",
                    format!("the archive is {} bytes, over the {MAX_MESSAGE}-byte limit", tar.len()),
                ));
            }
            Ok(pb::DownloadFileReply { tar })
        })
        .await
    }

    async fn list_files(&self, request: Request<pb::ListFilesRequest>) -> Result<Response<pb::ListFilesReply>, Status> {
        let r = request.into_inner();
        self.call("list_files", self.agent.list_files(&r)).await
    }

    async fn get_logs(&self, request: Request<pb::KernelRequest>) -> Result<Response<pb::GetLogsReply>, Status> {
        let r = request.into_inner();
        self.call("get_logs", async { Ok(pb::GetLogsReply { logs: self.agent.logs(&r.kernel_id).await? }) }).await
    }

    async fn get_container_stats(
        &self,
        request: Request<pb::GetContainerStatsRequest>,
    ) -> Result<Response<pb::JsonReply>, Status> {
        let r = request.into_inner();
        self.call("get_container_stats", async {
            Ok(pb::JsonReply { json: self.agent.container_stats(&r.kernel_id)?.to_string() })
        })
        .await
    }

    async fn sync_kernels(
        &self,
        request: Request<pb::SyncKernelsRequest>,
    ) -> Result<Response<pb::SyncKernelsReply>, Status> {
        let r = request.into_inner();
        self.call("sync_kernel_registry", self.agent.sync_kernels(&r.kernels)).await
    }

    async fn check_and_pull(
        &self,
        request: Request<pb::CheckAndPullRequest>,
    ) -> Result<Response<pb::CheckAndPullReply>, Status> {
        let r = request.into_inner();
        self.call("check_and_pull", async {
            Ok(pb::CheckAndPullReply { tasks: self.agent.check_and_pull(&r.images).await? })
        })
        .await
    }

    async fn purge_images(
        &self,
        request: Request<pb::PurgeImagesRequest>,
    ) -> Result<Response<pb::PurgeImagesReply>, Status> {
        let r = request.into_inner();
        self.call("purge_images", async {
            Ok(pb::PurgeImagesReply { responses: self.agent.purge_images(&r.images).await })
        })
        .await
    }

    async fn list_images(&self, _: Request<pb::ListImagesRequest>) -> Result<Response<pb::ListImagesReply>, Status> {
        self.call("list_images", async { Ok(pb::ListImagesReply { images: self.agent.list_images().await? }) }).await
    }

    async fn shutdown_service(
        &self,
        request: Request<pb::ShutdownServiceRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = request.into_inner();
        self.call("shutdown_service", async {
            self.agent.shutdown_service(&r.kernel_id, &r.service).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    async fn start_service(
        &self,
        request: Request<pb::StartServiceRequest>,
    ) -> Result<Response<pb::StartServiceReply>, Status> {
        let r = request.into_inner();
        self.call("start_service", async {
            let started = self.agent.start_service(&r.kernel_id, &r.service, &r.opts_json).await?;
            Ok(pb::StartServiceReply { status: started.as_str().into() })
        })
        .await
    }
}

fn tokio_stream<T: Send + 'static>(rx: tokio::sync::mpsc::Receiver<T>) -> impl Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// The service wrapped in the token check, ready for a tonic `Server`.
pub fn authenticated(
    service: AgentService,
    token: &str,
) -> Result<tonic::service::interceptor::InterceptedService<AgentServer<AgentService>, TokenCheck>> {
    let check = TokenCheck::new(token)?;
    let server =
        AgentServer::new(service).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE);
    Ok(tonic::service::interceptor::InterceptedService::new(server, check))
}

/// The span of one incoming call, `agent_rpc_server` (`otel.name` the gRPC path, e.g.
/// `bai.agent.v1.Agent/CreateKernels`): a child of the caller's span when the call carries a
/// W3C `traceparent` (the manager sends one), so the manager's trace goes on in the agent.
/// The handlers record `session_id` and `kernel_id` on it when the call names them; every
/// log line inside carries them and `component = "agent"`.
pub fn call_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path().trim_start_matches('/');
    let method = path.rsplit('/').next().unwrap_or(path);
    let span = tracing::info_span!(
        "agent_rpc_server",
        otel.name = %path,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        component = "agent",
        rpc.system = "grpc",
        rpc.method = %method,
        session_id = tracing::field::Empty,
        kernel_id = tracing::field::Empty,
    );
    bai_telemetry::propagation::set_parent_from_headers(&span, request.headers());
    span
}

/// TLS settings of the server.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate.
    pub cert: std::path::PathBuf,
    /// PEM key.
    pub key: std::path::PathBuf,
    /// PEM CA for client certificates (mTLS) when set.
    pub client_ca: Option<std::path::PathBuf>,
}

/// Serves the authenticated service on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: AgentService,
    token: &str,
    tls: Option<TlsFiles>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<()> {
    let mut builder = tonic::transport::Server::builder().trace_fn(call_span);
    if let Some(tls) = tls {
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| AgentError::Config { field: "rpc.tls".into(), reason: format!("{}: {e}", p.display()) })
        };
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
        if let Some(ca) = &tls.client_ca {
            config =
                config.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?)).client_auth_optional(false);
        }
        builder = builder
            .tls_config(config)
            .map_err(|e| AgentError::Config { field: "rpc.tls".into(), reason: e.to_string() })?;
    }
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    builder
        .add_service(authenticated(service, token)?)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| AgentError::Serve { what: "RPC server", reason: e.to_string() })
}
