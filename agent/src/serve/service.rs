//! The `dropscope.v1.Observer` service: requests in, checked at the edge;
//! errors become `tonic::Status` in one function ([`status_of`]).

use std::{pin::Pin, sync::Arc};

use dropscope_proto::v1::{self, observer_server};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use super::{observe::Plan, status::AgentState};
use crate::{
    convert,
    enrich::view::View,
    explain::{self, Flow, Target},
    fanout::Hub,
};

/// What `GetStatus` reports for a server that is not an agent (a
/// collector: its nodes' reports, summed).
pub trait StatusReport: Send + Sync {
    /// The answer now.
    fn report(&self, hub: &Hub) -> v1::GetStatusResponse;
}

/// Whose API this is.
#[derive(Clone)]
enum Source {
    /// An agent: its kernel, its tracker, its metadata.
    Agent(AgentState),
    /// A collector: events of many nodes, no kernel or metadata of its own.
    Collector(Arc<dyn StatusReport>),
}

/// The service: the hub to read and the state to report.
#[derive(Clone)]
pub struct Observer {
    hub: Hub,
    source: Source,
    archive: Option<Arc<dyn super::archive::Archive>>,
}

impl Observer {
    /// Serves `hub` and reports the agent's `state`.
    pub fn new(hub: Hub, state: AgentState) -> Self {
        Self {
            hub,
            source: Source::Agent(state),
            archive: None,
        }
    }

    /// Serves a collector's `hub`, reporting with `report`.
    pub fn for_collector(hub: Hub, report: Arc<dyn StatusReport>) -> Self {
        Self {
            hub,
            source: Source::Collector(report),
            archive: None,
        }
    }

    /// Answers `since` further back than the hub holds from `archive`.
    pub fn with_archive(mut self, archive: Arc<dyn super::archive::Archive>) -> Self {
        self.archive = Some(archive);
        self
    }
}

/// Who is asking: the TCP peer, or the Unix socket peer's credentials.
fn peer_of<T>(request: &Request<T>) -> String {
    if let Some(address) = request.remote_addr() {
        return format!("tcp {address}");
    }
    match request
        .extensions()
        .get::<tonic::transport::server::UdsConnectInfo>()
        .and_then(|info| info.peer_cred)
    {
        Some(cred) => match cred.pid() {
            Some(pid) => format!("unix uid={} pid={pid}", cred.uid()),
            None => format!("unix uid={}", cred.uid()),
        },
        None => "unix".to_owned(),
    }
}

/// Why an RPC failed, as a gRPC status (the one place errors are mapped).
enum Failure {
    NoMetadata,
    Collector,
    BadArgument { field: &'static str, why: String },
    Explain(explain::Error),
}

fn status_of(failure: Failure) -> Status {
    match failure {
        Failure::NoMetadata => Status::failed_precondition(
            "this agent has no cluster metadata: start it with --snapshot FILE or --kubernetes",
        ),
        Failure::Collector => Status::failed_precondition(
            "a collector explains nothing itself: ask the agent of the node (dropscope explain --server ...), or run dropscope explain --snapshot FILE",
        ),
        Failure::BadArgument { field, why } => Status::invalid_argument(format!("{field}: {why}")),
        Failure::Explain(error @ explain::Error::PodNotFound { .. })
        | Failure::Explain(error @ explain::Error::ServiceNotFound { .. })
        | Failure::Explain(error @ explain::Error::ServicePortNotFound { .. }) => {
            Status::not_found(error.to_string())
        }
        Failure::Explain(error) => Status::failed_precondition(error.to_string()),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::Event, Status>> + Send>>;

#[tonic::async_trait]
impl observer_server::Observer for Observer {
    type ObserveStream = EventStream;

    async fn observe(
        &self,
        request: Request<v1::ObserveRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let peer = peer_of(&request);
        let request = request.into_inner();
        // A collector's nodes may run different kernels: any reason name.
        let reasons = match &self.source {
            Source::Agent(state) => state.reasons.get(),
            Source::Collector(_) => None,
        };
        let known =
            |name: &str| reasons.is_none_or(|reasons| reasons.iter().any(|known| known == name));
        let plan = Plan::new(&request, &known)?;
        tracing::debug!(%peer, ?request, "observe");
        let receiver = plan.start(&self.hub, self.archive.as_deref(), peer);
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn get_status(
        &self,
        _request: Request<v1::GetStatusRequest>,
    ) -> Result<Response<v1::GetStatusResponse>, Status> {
        Ok(Response::new(match &self.source {
            Source::Agent(state) => state.report(&self.hub).await,
            Source::Collector(report) => report.report(&self.hub),
        }))
    }

    async fn explain(
        &self,
        request: Request<v1::ExplainRequest>,
    ) -> Result<Response<v1::ExplainResponse>, Status> {
        let request = request.into_inner();
        let flow = flow_of(&request).map_err(status_of)?;
        let Source::Agent(state) = &self.source else {
            return Err(status_of(Failure::Collector));
        };
        let store = state
            .metadata
            .get()
            .and_then(|metadata| metadata.store.clone())
            .ok_or(Failure::NoMetadata)
            .map_err(status_of)?;
        let store = store.read().await;
        let explanation = explain::explain(&View::new(&store), &flow)
            .map_err(|error| status_of(Failure::Explain(error)))?;
        Ok(Response::new(v1::ExplainResponse {
            explanation: Some(convert::explanation(&explanation)),
        }))
    }
}

fn flow_of(request: &v1::ExplainRequest) -> Result<Flow, Failure> {
    let target = |field: &'static str, text: &str| {
        if text.is_empty() {
            return Err(Failure::BadArgument {
                field,
                why: "required (NAMESPACE/POD or an IP address)".into(),
            });
        }
        text.parse::<Target>()
            .map_err(|error| Failure::BadArgument {
                field,
                why: error.to_string(),
            })
    };
    let port = u16::try_from(request.port)
        .ok()
        .filter(|port| *port > 0)
        .ok_or_else(|| Failure::BadArgument {
            field: "port",
            why: format!("{} is not a port (1-65535)", request.port),
        })?;
    let protocol = match v1::Protocol::try_from(request.protocol) {
        Ok(v1::Protocol::Unknown) => crate::model::Protocol::Tcp,
        Ok(protocol @ (v1::Protocol::Tcp | v1::Protocol::Udp | v1::Protocol::Sctp)) => {
            convert::protocol_from(protocol).unwrap_or(crate::model::Protocol::Tcp)
        }
        _ => {
            return Err(Failure::BadArgument {
                field: "protocol",
                why: "NetworkPolicy speaks of TCP, UDP and SCTP only".into(),
            });
        }
    };
    Ok(Flow {
        from: target("from", &request.from)?,
        to: target("to", &request.to)?,
        port,
        protocol,
        original: None,
    })
}
