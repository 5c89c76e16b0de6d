"""Federated denoising on Flower: patient-disjoint hospital sites, FedAvg/FedProx, TLS between processes."""
