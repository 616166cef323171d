"""Anonymous tunnels of the ephemeral interface: onion layers (``onion``), a node's circuits
(``relay``) and the client that opens tunnels (``client``)."""
