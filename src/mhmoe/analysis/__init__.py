"""The forgetting microscope: what router inputs encode, which heads carry it, how compositions share
routes (N_eff) and whether routes that share more forget more."""

from mhmoe.analysis.compositions import RouteCompositions, effective_compositions
from mhmoe.analysis.forgetting import RouteForgetting, route_forgetting

__all__ = ["RouteCompositions", "RouteForgetting", "effective_compositions", "route_forgetting"]
