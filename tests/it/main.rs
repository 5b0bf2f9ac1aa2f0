//! The one integration-test binary: the real `roster` binary against the sandbox over real
//! HTTP, and the sandbox's conformance to the documented Bitrix24 API.

mod ci_recipes;
mod cli;
mod docspace_cli;
mod docspace_client;
mod docspace_conformance;
mod docspace_samples;
mod gitops;
mod import_client;
mod import_fmt;
mod people;
mod people_cli;
mod reconcile;
mod resilience;
mod safety;
mod sandbox_conformance;
mod sandbox_departments;
mod sandbox_people;
mod schemas;
mod secrets;
mod soak;
mod structure_client;
mod support;
