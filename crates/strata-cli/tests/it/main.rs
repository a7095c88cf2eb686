//! End-to-end tests: the real `strata` binary on temporary projects.

mod alerts;
mod apis;
mod cases;
mod checks;
mod cluster;
mod databases;
mod docs;
mod drift;
mod example;
mod intervals;
mod maintenance;
mod materializations;
mod openlineage;
mod parallel;
mod partitions;
mod plan;
mod resume;
mod schedules;
mod serve;
mod storage;
mod support;
mod unit_tests;
