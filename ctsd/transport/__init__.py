"""How clients reach the daemon securely: TLS server credentials and secret files."""
