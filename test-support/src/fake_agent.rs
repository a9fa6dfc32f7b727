//! A simulated agent for scale tests and benchmarks: a real gRPC `Agent` endpoint (behind the
//! same token check as a real agent) that accepts `create_kernels` without starting anything
//! and emits the events a real agent would (`kernel_creating`, `kernel_started`), so a manager
//! moves the sessions to RUNNING; `execute` echoes the code and finishes. A fixture, never a default: nothing in the daemons uses it.

use std::sync::Arc;

use bai_agent_runtime::bus::{Envelope, EventBus};
use bai_agent_runtime::rpc::pb::agent_server::{Agent, AgentServer};
use bai_agent_runtime::rpc::{pb, TokenCheck};
use bai_core::{Event, KernelId, SessionId};
use serde_json::json;
use tonic::{Request, Response, Status};

/// A fake agent: no containers, only the protocol and the events.
pub struct FakeAgent {
    /// The agent id its events carry.
    pub id: String,
    /// Where its events go.
    pub bus: Arc<dyn EventBus>,
    /// Counts the `create_kernels` calls answered (shared by the agents of one fleet).
    pub answered: Arc<std::sync::atomic::AtomicUsize>,
    /// How many of the next `create_kernels` calls to refuse with `RESOURCE_EXHAUSTED`, as a
    /// real agent does when its allocator has less room than the manager thought.
    pub refuse: Arc<std::sync::atomic::AtomicUsize>,
}

#[tonic::async_trait]
impl Agent for FakeAgent {
    async fn create_kernels(
        &self,
        request: Request<pb::CreateKernelsRequest>,
    ) -> Result<Response<pb::CreateKernelsReply>, Status> {
        let refused =
            self.refuse.fetch_update(std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed, |n| {
                n.checked_sub(1)
            });
        if refused.is_ok() {
            return Err(Status::resource_exhausted("insufficient cpu: requested 1, available 0"));
        }
        let r = request.into_inner();
        let session_id: SessionId = r.session_id.parse().map_err(|_| Status::invalid_argument("session_id"))?;
        let mut kernels = Vec::new();
        for k in &r.kernels {
            let kernel_id: KernelId = k.kernel_id.parse().map_err(|_| Status::invalid_argument("kernel_id"))?;
            for event in [
                Event::KernelCreating { kernel_id, session_id, reason: String::new(), creation_info: json!({}) },
                Event::KernelStarted {
                    kernel_id,
                    session_id,
                    reason: String::new(),
                    creation_info: json!({"container_id": format!("fake-{kernel_id}"), "resource_spec": {"slots": k.resource_slots}}),
                },
            ] {
                self.bus
                    .produce(&Envelope::new(self.id.clone(), event))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?;
            }
            kernels.push(pb::KernelCreated {
                kernel_id: k.kernel_id.clone(),
                container_id: format!("fake-{kernel_id}"),
                ..Default::default()
            });
        }
        self.answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Response::new(pb::CreateKernelsReply { kernels }))
    }

    async fn destroy_kernel(
        &self,
        request: Request<pb::DestroyKernelRequest>,
    ) -> Result<Response<pb::DestroyKernelReply>, Status> {
        let r = request.into_inner();
        Ok(Response::new(pb::DestroyKernelReply { exit_code: 0, reason: r.reason }))
    }

    type ExecuteStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::ExecuteEvent, Status>> + Send>>;

    /// Runs nothing: every run prints its code back and finishes with exit code 0.
    async fn execute(&self, request: Request<pb::ExecuteRequest>) -> Result<Response<Self::ExecuteStream>, Status> {
        let r = request.into_inner();
        let events = [
            pb::ExecuteEvent {
                event: Some(pb::execute_event::Event::Record(pb::ConsoleRecord {
                    kind: "stdout".into(),
                    data: r.code,
                })),
            },
            pb::ExecuteEvent {
                event: Some(pb::execute_event::Event::Result(pb::ExecuteResult {
                    run_id: r.run_id,
                    status: "finished".into(),
                    has_exit_code: true,
                    exit_code: 0,
                    options_json: String::new(),
                })),
            },
        ];
        Ok(Response::new(Box::pin(futures::stream::iter(events.map(Ok)))))
    }

    async fn ping(&self, _: Request<pb::PingRequest>) -> Result<Response<pb::PingReply>, Status> {
        Err(Status::unimplemented("ping"))
    }

    async fn get_status(&self, _: Request<pb::GetStatusRequest>) -> Result<Response<pb::AgentStatus>, Status> {
        Err(Status::unimplemented("get_status"))
    }

    async fn gather_hwinfo(&self, _: Request<pb::GatherHwinfoRequest>) -> Result<Response<pb::JsonReply>, Status> {
        Err(Status::unimplemented("gather_hwinfo"))
    }

    async fn restart_kernel(
        &self,
        _: Request<pb::RestartKernelRequest>,
    ) -> Result<Response<pb::KernelCreated>, Status> {
        Err(Status::unimplemented("restart_kernel"))
    }

    async fn interrupt_kernel(&self, _: Request<pb::KernelRequest>) -> Result<Response<pb::Empty>, Status> {
        Err(Status::unimplemented("interrupt_kernel"))
    }

    async fn upload_file(&self, _: Request<pb::UploadFileRequest>) -> Result<Response<pb::Empty>, Status> {
        Err(Status::unimplemented("upload_file"))
    }

    async fn download_file(
        &self,
        _: Request<pb::DownloadFileRequest>,
    ) -> Result<Response<pb::DownloadFileReply>, Status> {
        Err(Status::unimplemented("download_file"))
    }

    async fn list_files(&self, _: Request<pb::ListFilesRequest>) -> Result<Response<pb::ListFilesReply>, Status> {
        Err(Status::unimplemented("list_files"))
    }

    async fn get_logs(&self, _: Request<pb::KernelRequest>) -> Result<Response<pb::GetLogsReply>, Status> {
        Err(Status::unimplemented("get_logs"))
    }

    async fn get_container_stats(
        &self,
        _: Request<pb::GetContainerStatsRequest>,
    ) -> Result<Response<pb::JsonReply>, Status> {
        Err(Status::unimplemented("get_container_stats"))
    }

    async fn sync_kernels(&self, _: Request<pb::SyncKernelsRequest>) -> Result<Response<pb::SyncKernelsReply>, Status> {
        Err(Status::unimplemented("sync_kernels"))
    }

    async fn check_and_pull(
        &self,
        _: Request<pb::CheckAndPullRequest>,
    ) -> Result<Response<pb::CheckAndPullReply>, Status> {
        Err(Status::unimplemented("check_and_pull"))
    }

    async fn purge_images(&self, _: Request<pb::PurgeImagesRequest>) -> Result<Response<pb::PurgeImagesReply>, Status> {
        Err(Status::unimplemented("purge_images"))
    }

    async fn list_images(&self, _: Request<pb::ListImagesRequest>) -> Result<Response<pb::ListImagesReply>, Status> {
        Ok(Response::new(pb::ListImagesReply { images: Vec::new() }))
    }

    async fn shutdown_service(&self, _: Request<pb::ShutdownServiceRequest>) -> Result<Response<pb::Empty>, Status> {
        Err(Status::unimplemented("shutdown_service"))
    }

    async fn start_service(
        &self,
        _: Request<pb::StartServiceRequest>,
    ) -> Result<Response<pb::StartServiceReply>, Status> {
        Err(Status::unimplemented("start_service"))
    }
}

/// Serves a [`FakeAgent`] named `id` on a free loopback port with `token`; answers its
/// address (`host:port`). The server runs until the runtime ends.
pub async fn serve_fake(id: String, bus: Arc<dyn EventBus>, token: &str) -> String {
    serve_fake_counted(id, bus, token, Arc::default()).await
}

/// [`serve_fake`], counting the `create_kernels` calls it answers in `answered`.
pub async fn serve_fake_counted(
    id: String,
    bus: Arc<dyn EventBus>,
    token: &str,
    answered: Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    serve(FakeAgent { id, bus, answered, refuse: Arc::default() }, token).await
}

/// Serves `agent` on a free loopback port with `token`; answers its address (`host:port`).
/// The server runs until the runtime ends.
pub async fn serve(agent: FakeAgent, token: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service =
        tonic::service::interceptor::InterceptedService::new(AgentServer::new(agent), TokenCheck::new(token).unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    addr.to_string()
}
