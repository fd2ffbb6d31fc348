//! Black-box tests of the whole application: the real wiring, real SQLite
//! files and a real HTTP server on a loopback port, driven over HTTP — plus
//! the crash test, which runs the real binary as a child and `kill -9`s it,
//! and the chaos run, which does so every two seconds under load.

mod access;
mod backup;
mod browser;
mod chaos;
mod crash;
mod http_errors;
mod http_orders;
mod http_reads;
mod jobs;
mod monitor;
mod operator;
mod optimize_db;
mod otlp;
mod postgres;
mod profile;
mod protection;
mod queries;
mod replay;
mod scale;
mod secrets;
mod support;
mod tidy;
mod traces;
mod webhooks;
