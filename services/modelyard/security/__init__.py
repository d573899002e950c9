"""Who may call, with what rights, and what they may spend: keys, scopes, secrets, audit."""
