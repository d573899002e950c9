"""The gateway service: the front door every request goes through."""
