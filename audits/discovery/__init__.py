"""Discovery probes: problems the audit finds without being told where to look. Importing this package registers them."""

from __future__ import annotations

from audits.discovery import attribution_regions, slice_discovery, trigger_scan, trigger_values, trigger_words  # noqa: F401
from audits.discovery.attribution_regions import AttributionRegions
from audits.discovery.slice_discovery import SliceDiscovery
from audits.discovery.trigger_scan import TriggerScan
from audits.discovery.trigger_values import TriggerValues
from audits.discovery.trigger_words import TriggerWords

__all__ = ["AttributionRegions", "SliceDiscovery", "TriggerScan", "TriggerValues", "TriggerWords"]
