"""The shop's vocabulary: categories, product kinds, materials, brands, colours, description parts.

Everything the catalog generator draws from. Near-duplicates and misleading wording are on
purpose: a "Merino-Blend" or even plain "Merino" title over a blended fabric, "Hiking-Style"
casual socks, "Compression-Fit" athletic socks. The structured fields (kind, material) shown on
every product page are the truth that tasks and the grader use.
"""

from __future__ import annotations

from dataclasses import dataclass

LETTER_SIZES = ("XS", "S", "M", "L", "XL", "XXL")
SOCK_SIZES = ("S", "M", "L", "XL")
SHOE_SIZES = ("6", "6.5", "7", "7.5", "8", "8.5", "9", "9.5", "10", "10.5", "11", "11.5", "12", "13")
ONE_SIZE = ("one size",)

COLOURS = ("black", "white", "grey", "charcoal", "navy", "blue", "olive", "green", "red",
           "burgundy", "brown", "beige", "orange", "yellow", "purple", "pink", "teal", "cream")


@dataclass(frozen=True, slots=True)
class Kind:
    """A product type: what a shopper asks for ("hiking socks")."""

    name: str
    category: str
    noun: str  # title noun, "Socks"
    words: tuple[str, ...]  # title words that honestly describe the kind
    materials: tuple[str, ...]
    price: tuple[int, int]  # cents, typical range
    sizes: tuple[str, ...]
    size_label: str = "size"
    colours: tuple[str, ...] = COLOURS
    lookalike: tuple[str, ...] = ()  # misleading title words borrowed from another kind
    weight: float = 1.0  # share of the catalog


_SOCK_MATS = ("merino wool", "merino blend", "cotton", "cotton blend", "wool", "wool blend",
              "bamboo", "polyester", "nylon blend", "cashmere blend", "alpaca wool")
_SHOE_MATS = ("leather", "suede", "mesh", "canvas", "synthetic", "knit")
_SHIRT_MATS = ("cotton", "organic cotton", "linen", "polyester", "merino wool", "cotton blend")
_JACKET_MATS = ("nylon", "polyester", "recycled polyester", "down", "wool blend", "softshell fabric")

KINDS: tuple[Kind, ...] = (
    # socks: the heart of the catalog
    Kind("hiking socks", "socks", "Socks", ("Hiking", "Trail Hiking", "Trekking"), _SOCK_MATS,
         (899, 2999), SOCK_SIZES, weight=5),
    Kind("running socks", "socks", "Socks", ("Running", "Run", "Marathon"), _SOCK_MATS,
         (599, 2199), SOCK_SIZES, weight=4),
    Kind("dress socks", "socks", "Socks", ("Dress", "Business", "Formal"), _SOCK_MATS,
         (499, 2499), SOCK_SIZES, weight=3),
    Kind("compression socks", "socks", "Socks", ("Compression", "Graduated Compression"), _SOCK_MATS,
         (999, 3499), SOCK_SIZES, weight=3),
    Kind("casual socks", "socks", "Socks", ("Everyday", "Crew", "Casual"), _SOCK_MATS,
         (399, 1599), SOCK_SIZES, lookalike=("Hiking-Style", "Trail-Look", "Outdoor-Style"), weight=4),
    Kind("athletic socks", "socks", "Socks", ("Athletic", "Sport", "Gym"), _SOCK_MATS,
         (499, 1799), SOCK_SIZES, lookalike=("Compression-Fit", "Running-Inspired"), weight=3),
    Kind("ski socks", "socks", "Socks", ("Ski", "Snow", "Alpine Ski"), _SOCK_MATS,
         (1299, 3999), SOCK_SIZES, weight=2),
    Kind("boot socks", "socks", "Socks", ("Boot", "Work Boot", "Heavy Boot"), _SOCK_MATS,
         (799, 2499), SOCK_SIZES, lookalike=("Hiking-Ready",), weight=2),
    Kind("no-show socks", "socks", "Socks", ("No-Show", "Invisible", "Low-Cut"), _SOCK_MATS,
         (299, 1299), SOCK_SIZES, weight=2),
    # shoes
    Kind("running shoes", "shoes", "Shoes", ("Running", "Road Running"), _SHOE_MATS,
         (4999, 17999), SHOE_SIZES, weight=3),
    Kind("trail running shoes", "shoes", "Shoes", ("Trail Running", "Trail Run"), _SHOE_MATS,
         (5999, 18999), SHOE_SIZES, weight=2),
    Kind("hiking boots", "shoes", "Boots", ("Hiking", "Trekking", "Mountain"), _SHOE_MATS,
         (6999, 24999), SHOE_SIZES, weight=2),
    Kind("sneakers", "shoes", "Sneakers", ("Classic", "Low-Top", "Street"), _SHOE_MATS,
         (3999, 12999), SHOE_SIZES, lookalike=("Running-Style", "Trail-Inspired"), weight=3),
    Kind("dress shoes", "shoes", "Shoes", ("Oxford Dress", "Derby Dress", "Formal"), _SHOE_MATS,
         (5999, 22999), SHOE_SIZES, weight=2),
    Kind("sandals", "shoes", "Sandals", ("Sport", "Slide", "Strap"), _SHOE_MATS,
         (1999, 7999), SHOE_SIZES, weight=2),
    # shirts
    Kind("t-shirts", "shirts", "T-Shirt", ("Essential", "Crew Neck", "Classic"), _SHIRT_MATS,
         (999, 3999), LETTER_SIZES, weight=3),
    Kind("polo shirts", "shirts", "Polo Shirt", ("Pique", "Classic", "Golf"), _SHIRT_MATS,
         (1999, 5999), LETTER_SIZES, weight=2),
    Kind("dress shirts", "shirts", "Dress Shirt", ("Slim-Fit", "Oxford", "Non-Iron"), _SHIRT_MATS,
         (2999, 8999), LETTER_SIZES, weight=2),
    Kind("base layer tops", "shirts", "Base Layer Top", ("Thermal", "Long-Sleeve"), _SHIRT_MATS,
         (2499, 9999), LETTER_SIZES, lookalike=("Hiking",), weight=2),
    # jackets
    Kind("rain jackets", "jackets", "Rain Jacket", ("Waterproof", "Packable", "Storm"), _JACKET_MATS,
         (4999, 24999), LETTER_SIZES, weight=2),
    Kind("down jackets", "jackets", "Down Jacket", ("Puffer", "Insulated", "Lightweight"), _JACKET_MATS,
         (7999, 29999), LETTER_SIZES, weight=2),
    Kind("fleece jackets", "jackets", "Fleece Jacket", ("Full-Zip", "Midweight", "Polar"), _JACKET_MATS,
         (2999, 11999), LETTER_SIZES, lookalike=("Down-Feel",), weight=2),
    Kind("softshell jackets", "jackets", "Softshell Jacket", ("Stretch", "Windproof"), _JACKET_MATS,
         (5999, 17999), LETTER_SIZES, lookalike=("Rain-Ready",), weight=1),
    # bags
    Kind("backpacks", "bags", "Backpack", ("Daypack", "Commuter", "Travel"),
         ("nylon", "polyester", "canvas", "recycled polyester"), (2999, 15999),
         ("15 L", "20 L", "25 L", "30 L", "40 L"), size_label="capacity", weight=3),
    Kind("duffel bags", "bags", "Duffel Bag", ("Gym", "Weekender", "Travel"),
         ("nylon", "polyester", "canvas", "leather"), (2499, 12999),
         ("30 L", "45 L", "60 L", "90 L"), size_label="capacity", weight=2),
    Kind("tote bags", "bags", "Tote Bag", ("Market", "Everyday", "Shopper"),
         ("canvas", "cotton", "leather", "jute"), (999, 6999), ONE_SIZE, weight=2),
    Kind("laptop sleeves", "bags", "Laptop Sleeve", ("Padded", "Slim", "Felt"),
         ("neoprene", "felt", "leather", "polyester"), (1499, 4999),
         ("13 inch", "14 inch", "15 inch", "16 inch"), size_label="fits", weight=2),
    # kitchen
    Kind("frying pans", "kitchen", "Frying Pan", ("Skillet", "Everyday", "Pro"),
         ("cast iron", "stainless steel", "nonstick aluminium", "carbon steel"), (1999, 12999),
         ("20 cm", "24 cm", "28 cm", "30 cm"), size_label="diameter", colours=("black", "grey", "red", "blue"),
         weight=2),
    Kind("chef's knives", "kitchen", "Chef's Knife", ("Forged", "Japanese-Style", "Classic"),
         ("stainless steel", "carbon steel", "damascus steel", "ceramic"), (1999, 19999),
         ("15 cm", "18 cm", "20 cm", "23 cm"), size_label="blade", colours=("black", "brown", "grey"),
         weight=2),
    Kind("cutting boards", "kitchen", "Cutting Board", ("End-Grain", "Reversible", "Large"),
         ("bamboo", "walnut", "maple", "plastic"), (1299, 8999), ("small", "medium", "large"),
         colours=("brown", "beige", "white", "black"), weight=2),
    Kind("kettles", "kitchen", "Kettle", ("Electric", "Gooseneck", "Fast-Boil"),
         ("stainless steel", "glass", "plastic"), (1999, 8999), ("1 L", "1.7 L"), size_label="volume",
         colours=("black", "white", "grey", "red", "cream"), weight=2),
    Kind("coffee grinders", "kitchen", "Coffee Grinder", ("Burr", "Electric", "Manual"),
         ("stainless steel", "ceramic", "plastic"), (1999, 14999), ONE_SIZE,
         colours=("black", "white", "grey"), weight=1),
    # electronics accessories
    Kind("usb-c cables", "electronics", "USB-C Cable", ("Fast-Charging", "Braided", "Data"),
         ("braided nylon", "PVC", "silicone"), (599, 2999), ("0.5 m", "1 m", "2 m", "3 m"),
         size_label="length", colours=("black", "white", "grey", "blue", "red"), weight=3),
    Kind("phone cases", "electronics", "Phone Case", ("Slim", "Rugged", "Clear"),
         ("silicone", "leather", "TPU", "polycarbonate"), (799, 4999),
         ("6.1 inch", "6.3 inch", "6.7 inch"), size_label="fits", weight=3),
    Kind("wall chargers", "electronics", "Wall Charger", ("GaN", "Compact", "Dual-Port"),
         ("plastic", "aluminium"), (1299, 5999), ("20 W", "35 W", "65 W", "100 W"), size_label="power",
         colours=("black", "white", "grey"), lookalike=("Fast-Charging",), weight=2),
    Kind("power banks", "electronics", "Power Bank", ("Portable", "Slim", "High-Capacity"),
         ("plastic", "aluminium"), (1999, 7999), ("5000 mAh", "10000 mAh", "20000 mAh"),
         size_label="capacity", colours=("black", "white", "grey", "blue"), weight=2),
    Kind("wireless earbuds", "electronics", "Wireless Earbuds", ("Noise-Cancelling", "Sport", "True"),
         ("plastic",), (1999, 19999), ONE_SIZE, colours=("black", "white", "grey", "navy"), weight=2),
    # accessories
    Kind("winter gloves", "accessories", "Gloves", ("Winter", "Insulated", "Touchscreen"),
         ("wool", "merino wool", "leather", "fleece", "polyester"), (1299, 5999), ("S", "M", "L", "XL"),
         weight=2),
    Kind("beanies", "accessories", "Beanie", ("Knit", "Ribbed", "Cuffed"),
         ("wool", "merino wool", "acrylic", "cashmere blend"), (999, 3999), ONE_SIZE, weight=2),
    Kind("caps", "accessories", "Cap", ("Baseball", "Trucker", "Running"),
         ("cotton", "polyester", "nylon"), (999, 3499), ONE_SIZE, weight=2),
)

CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(k.category for k in KINDS))
KIND_BY_NAME = {k.name: k for k in KINDS}

BRANDS: dict[str, tuple[str, ...]] = {
    "socks": ("Trailpeak", "Northloom", "Fjellsok", "Woolworks", "Pacebird", "Sockwright",
              "Summit Thread", "Larkspur", "Heelstone", "Driftwool", "Cobblefield", "Ridgeknit"),
    "shoes": ("Pacebird", "Urbanstride", "Trailpeak", "Cobblefield", "Stonecrest", "Fleetfoot",
              "Marrow & Vale", "Kestrel"),
    "shirts": ("Northloom", "Linden Row", "Summit Thread", "Harbor & Pine", "Ashgrove", "Fieldmark"),
    "jackets": ("Trailpeak", "Stormline", "Northloom", "Fjellsok", "Ashgrove", "Kestrel"),
    "bags": ("Carryall Co", "Trailpeak", "Urbanstride", "Harbor & Pine", "Packwell", "Fieldmark"),
    "kitchen": ("Copperpot", "Ironbark", "Hearthline", "Mise", "Kettlebrook", "Oakhollow"),
    "electronics": ("Voltline", "Cablecraft", "Amplex", "Nimbus", "Boltwise", "Pocketwatt"),
    "accessories": ("Northloom", "Woolworks", "Larkspur", "Fieldmark", "Driftwool", "Stormline"),
}

# a title word for a material; blends sometimes borrow the pure fibre's word (misleading)
MATERIAL_WORDS: dict[str, tuple[str, ...]] = {
    "merino wool": ("Merino", "Merino Wool", "100% Merino"),
    "merino blend": ("Merino-Blend", "Merino Blend", "Merino"),
    "cotton": ("Cotton", "Pure Cotton"),
    "cotton blend": ("Cotton-Blend", "Cotton"),
    "organic cotton": ("Organic Cotton",),
    "wool": ("Wool", "Pure Wool"),
    "wool blend": ("Wool-Blend", "Wool"),
    "bamboo": ("Bamboo",),
    "cashmere blend": ("Cashmere-Blend", "Cashmere"),
    "alpaca wool": ("Alpaca",),
}
BLEND_OF = {"merino blend": "merino wool", "cotton blend": "cotton", "wool blend": "wool",
            "nylon blend": "nylon", "cashmere blend": "cashmere"}

ADJECTIVES = ("Ultralight", "Cushioned", "Premium", "Essential", "Pro", "Classic", "Everyday",
              "Performance", "Heritage", "Lightweight", "Heavyweight", "Midweight", "Signature")

FEATURES: dict[str, tuple[str, ...]] = {
    "socks": ("a cushioned sole", "a reinforced heel and toe", "arch support", "a seamless toe",
              "moisture-wicking fibres", "odour-resistant yarn", "breathable mesh zones",
              "a stay-up cuff", "flat-knit seams", "extra padding at the shin"),
    "shoes": ("a grippy rubber outsole", "a cushioned midsole", "a padded collar",
              "a waterproof membrane", "a removable insole", "a wide toe box", "reflective details"),
    "shirts": ("a tagless collar", "a relaxed fit", "flatlock seams", "a tailored fit",
               "quick-dry fabric", "UPF 30 sun protection", "pre-shrunk fabric"),
    "jackets": ("taped seams", "an adjustable hood", "zippered hand pockets", "pit zips",
                "a packable design", "a two-way zipper", "elastic cuffs"),
    "bags": ("a padded laptop compartment", "water-resistant fabric", "YKK zippers",
             "a hidden back pocket", "compression straps", "a luggage pass-through"),
    "kitchen": ("an ergonomic handle", "even heat distribution", "a dishwasher-safe finish",
                "a lifetime warranty", "a non-slip base", "a precision-ground edge"),
    "electronics": ("fast charging", "a two-year warranty", "a reinforced strain relief",
                    "overheat protection", "a compact design", "universal compatibility"),
    "accessories": ("a fleece lining", "touchscreen fingertips", "a ribbed cuff",
                    "an adjustable strap", "a moisture-wicking band"),
}

# sentences that mention activities the product is *not* made for (misleading on purpose)
DECOY_SENTENCES = (
    "Its {look} look goes with everything.",
    "Inspired by classic {look} gear, made for the city.",
    "Pairs well with your {look} outfit.",
)
