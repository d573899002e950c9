"""AWS Bedrock through its Converse API: SigV4-signed calls, the binary event stream."""
