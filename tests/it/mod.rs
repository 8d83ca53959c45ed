mod accounts;
mod cli;
mod import_apply;
mod import_rows;
mod request_errors;
mod transport;
