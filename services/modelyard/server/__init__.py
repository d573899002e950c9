"""What every modelyard gRPC server shares: interceptor, health, reflection, drain."""
