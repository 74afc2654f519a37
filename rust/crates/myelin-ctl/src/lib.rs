//! Myelinctl: the one command line over Myelin's services.
