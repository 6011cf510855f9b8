"""Pricing: the price book, the cost of each inference with its provenance, capacity pools, repricing.

See README.md in this folder for the user price file, the matching rules and the formulas.
"""
from warehouse.pricing.book import PriceBook, Quote, Rate, load_book
from warehouse.pricing.capacity import PoolPrice, allocate_closed_hour, allocate_hour, allocate_table
from warehouse.pricing.cost import (Coverage, PricingDefaults, compute_costs, landing_transform, price_coverage,
                                    price_table)
from warehouse.pricing.reprice import RepriceResult, allocate_capacity, cost_view_sql, reprice

__all__ = [
    "PriceBook", "Quote", "Rate", "load_book",
    "PoolPrice", "allocate_closed_hour", "allocate_hour", "allocate_table",
    "Coverage", "PricingDefaults", "compute_costs", "landing_transform", "price_coverage", "price_table",
    "RepriceResult", "allocate_capacity", "cost_view_sql", "reprice",
]
