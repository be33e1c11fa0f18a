//! The one black-box test binary: each module under `e2e/` covers one feature.

mod e2e {
    pub mod auth_browser;
    pub mod auth_cimd;
    pub mod auth_cors;
    pub mod auth_lifecycle;
    pub mod auth_login;
    pub mod auth_logs;
    pub mod auth_rules;
    pub mod mock_taskmanager;
    pub mod resource_server;
    pub mod sdk_clients;
    pub mod setup_client;
}
