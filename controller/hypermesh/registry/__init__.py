"""The registry: the authority for a network's TLDs (issue 3). What is here so far: the rules
for which TLD names may be registered. Signed requests, zones and the HTTP/3 API follow."""

from hypermesh.registry.errors import PolicyError, RegistryError
from hypermesh.registry.names import check_tld, root_zone_tlds, special_use

__all__ = ["PolicyError", "RegistryError", "check_tld", "root_zone_tlds", "special_use"]
